"""The ONNX Runtime backend: same embeddings as torch, exports cached and invalidated, auto choice."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from imagegen import make_catalog, product_image
from searching import search_image

from visualfinder.errors import ModelUnavailableError, SettingsError
from visualfinder.library.facade import open_library
from visualfinder.models import embedder as embedder_module
from visualfinder.models import onnx_backend
from visualfinder.models.embedder import Embedder

pytestmark = pytest.mark.skipif(not onnx_backend.available(), reason="onnxruntime is not installed")

TEXTS = ["a red leather armchair", "oak table", ""]


def _images():
    return [product_image(seed, size) for seed, size in ((1, (320, 240)), (2, (90, 300)), (3, (640, 480)))]


def _export_dir(onnx_dir):
    (folder,) = [p for p in onnx_dir.iterdir() if p.is_dir()]
    return folder


def test_onnx_and_torch_give_the_same_embeddings(tmp_path):
    torch_side = Embedder("vf-tiny", "none", "cpu", backend="torch")
    onnx_side = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx")
    assert torch_side.backend == "torch" and onnx_side.backend == "onnx"
    np.testing.assert_allclose(
        onnx_side.embed_images(_images()), torch_side.embed_images(_images()), atol=1e-4
    )
    np.testing.assert_allclose(onnx_side.embed_texts(TEXTS), torch_side.embed_texts(TEXTS), atol=1e-4)
    vectors = onnx_side.embed_images(_images())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_export_is_reused_without_building_the_torch_model(tmp_path, fresh_process, monkeypatch):
    first = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx")
    expected = first.embed_images(_images())
    first.embed_texts(TEXTS)
    folder = _export_dir(tmp_path / "onnx")
    stamps = {name: (folder / name).stat().st_mtime_ns for name in ("image.onnx", "text.onnx")}
    # A new process: no model in memory, and building one would fail the test.
    monkeypatch.setattr(embedder_module, "_engines", {})
    monkeypatch.setattr(embedder_module, "_loaded", {})
    monkeypatch.setattr(Embedder, "_create", lambda *a: pytest.fail("the torch model was built again"))
    again = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx")
    np.testing.assert_allclose(again.embed_images(_images()), expected, atol=1e-6)
    again.embed_texts(TEXTS)
    assert {name: (folder / name).stat().st_mtime_ns for name in stamps} == stamps


def test_an_export_made_by_other_versions_is_made_again(tmp_path, fresh_process, monkeypatch):
    Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx").embed_images(_images())
    folder = _export_dir(tmp_path / "onnx")
    meta = json.loads((folder / "export.json").read_text())
    meta["stamp"] = meta["stamp"].replace("torch ", "torch 0.0-")  # as if exported by another torch
    (folder / "export.json").write_text(json.dumps(meta))
    old = (folder / "image.onnx").stat().st_mtime_ns
    monkeypatch.setattr(embedder_module, "_engines", {})
    renewed = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx")
    assert renewed.backend == "onnx"
    assert (folder / "image.onnx").stat().st_mtime_ns != old
    assert json.loads((folder / "export.json").read_text())["stamp"] == onnx_backend.fingerprint(
        renewed.key, None
    )


def test_a_weights_file_that_changes_invalidates_its_export(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"x" * 10)
    before = onnx_backend.fingerprint("m/file:w.bin:10", str(weights))
    os.utime(weights, ns=(1, 1))
    assert onnx_backend.fingerprint("m/file:w.bin:10", str(weights)) != before


def test_auto_measures_once_and_keeps_the_verdict(tmp_path, fresh_process):
    auto = Embedder("vf-tiny", "none", "cpu", backend="auto", onnx_dir=tmp_path / "onnx")
    chosen = auto.backend
    meta = json.loads((_export_dir(tmp_path / "onnx") / "export.json").read_text())
    assert meta["choice"] == chosen and set(meta["timings"]) == {"torch", "onnx", "torch_text", "onnx_text"}
    assert (_export_dir(tmp_path / "onnx") / "image.onnx").exists() == (chosen == "onnx")


def test_the_race_weighs_a_text_query_with_an_image_and_keeps_a_tie_for_onnx():
    verdict = embedder_module._verdict
    # Torch a little faster on images, ONNX much faster on text (the short text tower): ONNX.
    assert verdict({"torch": 0.050, "onnx": 0.055, "torch_text": 0.030, "onnx_text": 0.010}) == "onnx"
    # Torch faster on both by more than the margin: torch.
    assert verdict({"torch": 0.030, "onnx": 0.050, "torch_text": 0.010, "onnx_text": 0.012}) == "torch"
    # Within the margin (noise on a shared machine) ONNX keeps it; a verdict without text timings
    # (made before text was timed) still reads.
    assert verdict({"torch": 0.050, "onnx": 0.056}) == "onnx"
    assert verdict({"torch": 0.040, "onnx": 0.050}) == "torch"


def test_auto_uses_torch_when_torch_won_the_race(tmp_path, fresh_process, monkeypatch):
    Embedder("vf-tiny", "none", "cpu", backend="auto", onnx_dir=tmp_path / "onnx").load()
    meta_file = _export_dir(tmp_path / "onnx") / "export.json"
    meta = json.loads(meta_file.read_text())
    meta["choice"] = "torch"
    meta_file.write_text(json.dumps(meta))
    monkeypatch.setattr(embedder_module, "_engines", {})
    assert Embedder("vf-tiny", "none", "cpu", backend="auto", onnx_dir=tmp_path / "onnx").backend == "torch"


def test_auto_without_an_export_folder_or_on_request_uses_torch(tmp_path):
    assert Embedder("vf-tiny", "none", "cpu").backend == "torch"  # no onnx_dir: nothing to cache in
    assert Embedder("vf-tiny", "none", "cpu", backend="torch", onnx_dir=tmp_path).backend == "torch"
    assert not any(tmp_path.iterdir())


def test_a_failed_export_falls_back_to_torch_under_auto_and_fails_clearly_under_onnx(
    tmp_path, fresh_process, monkeypatch
):
    def broken(self, tower, model, example):
        raise onnx_backend.OnnxExportError(f"cannot export the {tower} tower to ONNX: unsupported operator")

    monkeypatch.setattr(onnx_backend.OnnxCache, "export", broken)
    assert Embedder("vf-tiny", "none", "cpu", backend="auto", onnx_dir=tmp_path / "a").backend == "torch"
    with pytest.raises(ModelUnavailableError, match="unsupported operator"):
        Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "b").load()


def test_onnx_backend_without_onnxruntime_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_backend, "available", lambda: False)
    with pytest.raises(ModelUnavailableError, match="pip install onnxruntime"):
        Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path).load()
    assert Embedder("vf-tiny", "none", "cpu", backend="auto", onnx_dir=tmp_path).backend == "torch"


def test_a_library_on_the_onnx_backend_finds_what_torch_finds(settings, tmp_path):
    files = make_catalog(tmp_path / "catalog", 12)
    answers = {}
    for backend in ("torch", "onnx"):
        lib = open_library(settings.replace(data_dir=tmp_path / backend, backend=backend))
        try:
            lib.index([tmp_path / "catalog"])
            assert lib.embedder.backend == backend
            answers[backend] = [[r.path for r in search_image(lib, f, k=3)] for f in files[:4]]
            assert (tmp_path / backend / "onnx").exists() == (backend == "onnx")
        finally:
            lib.close()
    assert answers["onnx"] == answers["torch"]


def test_settings_reject_an_unknown_backend(settings):
    with pytest.raises(SettingsError, match="backend"):
        settings.replace(backend="tensorflow")


def test_onnx_runs_on_a_gpu_provider_only_where_the_build_has_it():
    cuda_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    mac_build = ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    assert onnx_backend.providers_for("cuda", cuda_build) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_backend.providers_for("mps", mac_build) == ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    assert onnx_backend.providers_for("cuda", mac_build) == ["CPUExecutionProvider"]  # CPU-only build
    assert onnx_backend.providers_for("cpu", cuda_build) == ["CPUExecutionProvider"]
    # This machine's build: onnxruntime on CPU is always a candidate; a GPU only with its provider.
    assert onnx_backend.accelerates("cpu")
    import onnxruntime

    assert onnx_backend.accelerates("cuda") == (
        "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    )


def test_the_text_tower_runs_only_the_positions_the_texts_use_with_the_same_vectors(tmp_path):
    """A causal, argmax-pooled CLIP text tower gives the same vectors over the used positions
    (models/short_text.py) as over the whole padded context, on torch and on ONNX."""
    import torch

    from visualfinder.models.short_text import short_text_tower, used_length

    texts = ["red", "a red leather armchair with oak legs, seen from the left side", "", "lamp"]
    torch_side = Embedder("vf-tiny", "none", "cpu", backend="torch")
    onnx_side = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx")
    torch_side.load()
    tokens = torch_side._tokenizer(texts)
    assert 3 < used_length(tokens) < 20 and used_length(tokens[:1]) == 3  # start, "red", end
    model = torch_side._model
    with torch.inference_mode():
        full = model.encode_text(torch.as_tensor(tokens)).numpy()
        short = short_text_tower(model)(torch.as_tensor(tokens[:, : used_length(tokens)])).numpy()
    np.testing.assert_allclose(short, full, atol=1e-5)
    full_unit = full / np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose(torch_side.embed_texts(texts), full_unit, atol=1e-5)
    np.testing.assert_allclose(onnx_side.embed_texts(texts), full_unit, atol=1e-4)
    assert onnx_side._engine._short_text is True  # the export takes any sequence length
    # One text alone, or beside a long one, gets the same vector.
    np.testing.assert_allclose(onnx_side.embed_texts(texts[:1])[0], full_unit[0], atol=1e-4)
