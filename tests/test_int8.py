"""model_precision = int8: a quantized ONNX model with vectors of its own key, close to fp32's."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from imagegen import make_catalog, product_image
from searching import search_image

from visualfinder.cli.main import main
from visualfinder.config import Settings
from visualfinder.errors import ModelUnavailableError, SettingsError
from visualfinder.library.facade import open_library
from visualfinder.models import onnx_backend
from visualfinder.models.embedder import Embedder, model_key, precision_of_key

pytestmark = pytest.mark.skipif(not onnx_backend.available(), reason="onnxruntime is not installed")


def _images():
    return [product_image(seed, size) for seed, size in ((1, (320, 240)), (2, (90, 300)), (3, (640, 480)))]


def test_int8_is_another_model_key():
    assert model_key("vf-tiny", "none", "int8") == model_key("vf-tiny", "none") + "/int8"
    assert precision_of_key(model_key("vf-tiny", "none", "int8")) == "int8"
    assert precision_of_key(model_key("vf-tiny", "none")) == "fp32"
    with pytest.raises(ModelUnavailableError, match="precision must be one of"):
        model_key("vf-tiny", "none", "int4")


def test_the_int8_model_is_quantized_and_close_to_fp32(tmp_path, fresh_process):
    fp32 = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx")
    int8 = Embedder("vf-tiny", "none", "auto", backend="auto", onnx_dir=tmp_path / "onnx", precision="int8")
    assert int8.backend == "onnx" and int8.device == "cpu" and int8.key.endswith("/int8")
    a, b = fp32.embed_images(_images()), int8.embed_images(_images())
    cosine = (a * b).sum(axis=1)
    assert cosine.min() >= onnx_backend.MIN_INT8_COSINE and not np.allclose(a, b, atol=1e-6)
    texts = ["a red leather armchair", "oak table"]
    assert (fp32.embed_texts(texts) * int8.embed_texts(texts)).sum(
        axis=1
    ).min() >= onnx_backend.MIN_INT8_COSINE
    # Its own export folder beside fp32's, holding integer matrix products.
    folders = {p.name for p in (tmp_path / "onnx").iterdir() if p.is_dir()}
    assert len(folders) == 2
    (folder,) = [p for p in (tmp_path / "onnx").iterdir() if "int8" in p.name]
    ops = {node.op_type for node in onnx.load(folder / "image.onnx").graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, ops


def test_int8_runs_on_onnx_whatever_the_backend_and_refuses_a_gpu(tmp_path, fresh_process):
    assert (
        Embedder("vf-tiny", "none", "cpu", backend="torch", onnx_dir=tmp_path, precision="int8").backend
        == "onnx"
    )
    with pytest.raises(ModelUnavailableError, match="int8 models run on the CPU"):
        Embedder("vf-tiny", "none", "cuda", onnx_dir=tmp_path, precision="int8")
    with pytest.raises(SettingsError, match="model_precision must be one of"):
        Settings.load(tmp_path / "vf", model_precision="int4")


def test_a_poor_int8_agreement_refuses_the_export(tmp_path, fresh_process, monkeypatch):
    monkeypatch.setattr(onnx_backend, "MIN_INT8_COSINE", 1.01)  # no quantized model reaches it
    int8 = Embedder("vf-tiny", "none", "cpu", onnx_dir=tmp_path / "onnx", precision="int8")
    with pytest.raises(ModelUnavailableError, match="agrees with fp32 only to cosine"):
        int8.load()


def test_a_new_library_takes_int8_and_a_switch_changes_the_precision(data_dir, tmp_path, monkeypatch, capsys):
    catalog = tmp_path / "catalog"
    files = make_catalog(catalog, 6)
    monkeypatch.setenv("VISUALFINDER_MODEL_PRECISION", "int8")
    assert main(["index", str(catalog)]) == 0
    with open_library(Settings.load()) as library:
        assert library.model_key.endswith("/int8") and library.embedder.backend == "onnx"
        assert search_image(library, files[2], k=1)[0].path == str(files[2])
    # The settings asking for fp32 again change nothing by themselves: the library keeps int8 ...
    monkeypatch.setenv("VISUALFINDER_MODEL_PRECISION", "fp32")
    with open_library(Settings.load()) as library:
        assert library.model_key.endswith("/int8")
    capsys.readouterr()
    # ... until switch-model re-embeds it (resuming the requested model, fp32 here).
    assert main(["switch-model"]) == 0
    assert "fp32" in capsys.readouterr().out
    with open_library(Settings.load()) as library:
        assert library.model_key == model_key("vf-tiny", "none")
        assert search_image(library, files[4], k=1)[0].path == str(files[4])
    assert main(["switch-model", "--precision", "int8"]) == 0
    with open_library(Settings.load()) as library:
        assert library.model_key == model_key("vf-tiny", "none", "int8")
        assert library.catalog.count_embedded(model_key("vf-tiny", "none")) == 6  # fp32's kept
    assert json.loads(_run_json(capsys, ["status", "--json"]))["model_key"].endswith("/int8")
    assert "(none, int8)" in _run_json(capsys, ["status"])


def _run_json(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out
