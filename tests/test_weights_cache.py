"""One cache lookup for pretrained weights (models/weights.cached_weights), used by the download
and by the app before it offers one; weights already here load offline."""

from __future__ import annotations

from visualfinder.gui.model_fetch import weights_missing
from visualfinder.models.weights import cached_weights, fetch_pretrained, weights_source


def hub_cache(root, repo: str, filename: str, data: bytes = b"weights") -> str:
    """A Hugging Face cache holding one file of `repo`, laid out as huggingface_hub writes it."""
    folder = root / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(data)
    return str(snapshot / filename)


def test_hub_weights_in_the_cache_are_found_and_fetched_without_the_network(tmp_path, monkeypatch):
    cfg = {"hf_hub": "org/tiny-clip/"}
    assert cached_weights(cfg, str(tmp_path)) is None
    assert weights_source(cfg) == "https://huggingface.co/org/tiny-clip"
    path = hub_cache(tmp_path, "org/tiny-clip", "open_clip_pytorch_model.bin")
    assert cached_weights(cfg, str(tmp_path)) == path
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: offline
    assert fetch_pretrained("tiny", "tag", cfg, str(tmp_path), None) == path


def test_url_weights_in_open_clips_cache_load_offline(tmp_path):
    cfg = {"url": "http://127.0.0.1:9/weights/tiny.pt"}
    assert cached_weights(cfg, str(tmp_path)) is None
    (tmp_path / "tiny.pt").write_bytes(b"weights")
    assert fetch_pretrained("tiny", "tag", cfg, str(tmp_path), None) == str(tmp_path / "tiny.pt")


def test_the_app_asks_the_same_lookup_before_it_offers_a_download(tmp_path):
    import open_clip

    cfg = open_clip.get_pretrained_cfg("ViT-B-32-256", "datacomp_s34b_b86k")
    assert weights_missing("ViT-B-32-256", "datacomp_s34b_b86k", str(tmp_path)) == weights_source(cfg)
    hub_cache(
        tmp_path, cfg["hf_hub"].rstrip("/"), "open_clip_pytorch_model.bin"
    )  # "org/repo/": the default file
    assert weights_missing("ViT-B-32-256", "datacomp_s34b_b86k", str(tmp_path)) is None
