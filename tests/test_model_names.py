"""Model and weight names offered by the settings dialog come from open_clip, ours included."""

from __future__ import annotations

from visualfinder.models.embedder import known_models, known_pretrained


def test_known_models_include_the_default_and_the_test_model():
    models = known_models()
    assert "ViT-B-32-256" in models and "vf-tiny" in models
    assert models == sorted(models, key=str.casefold)


def test_known_pretrained_tags_per_model():
    assert "datacomp_s34b_b86k" in known_pretrained("ViT-B-32-256")
    assert known_pretrained("vf-tiny") == []  # random init only
    assert known_pretrained("no-such-model") == []
