"""The CPU path without torch: the numpy tokenizer and preprocessing equal open_clip's, the ONNX
engine serves every command without importing torch or open_clip, a damaged export is made
again, and a model is prepared once per machine."""

from __future__ import annotations

import json
import logging
import random
import shutil
import string
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from imagegen import make_catalog, product_image, write_image
from PIL import Image
from procutil import subprocess_env

from visualfinder.cli.main import main
from visualfinder.models import embedder as embedder_module
from visualfinder.models import onnx_backend
from visualfinder.models.embedder import MODEL_CONFIG_DIR, Embedder, gpu_possible, model_config
from visualfinder.models.preprocess import Preprocessor, PreprocessSpec
from visualfinder.models.tokenizer import ClipTokenizer, lean_tokenizer, unsupported_reason

pytestmark = pytest.mark.skipif(not onnx_backend.available(), reason="onnxruntime is not installed")

SHIPPED = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
HEAVY = ("torch", "torchvision", "open_clip")


def _texts() -> list[str]:
    rng = random.Random(0)
    texts = [
        "a red leather armchair", "Chaise longue en cuir rouge", "Rotes Ledersofa, 3-Sitzer!", "木製の椅子",
        "стул", "café &amp; crème", "<start_of_text> hi", "emoji 🪑🛋️", "  tabs\tand\nnewlines  ", "x" * 300,
        "it's a \u201csmart\u201d quote", "ﬁne ligature", "ＦＵＬＬＷＩＤＴＨ", "", "1234567890", "a_b-c.d",
        "\x1b[31mred\x1b[0m", "&lt;b&gt;bold&lt;/b&gt;", "oak table, 120 cm",
    ]  # fmt: skip
    for _ in range(150):  # printable ASCII (the path that skips ftfy) and arbitrary Unicode
        texts.append("".join(rng.choice(string.printable) for _ in range(rng.randint(0, 40))))
        texts.append("".join(chr(rng.randint(32, 0x3000)) for _ in range(rng.randint(0, 20))))
    return texts


def _images() -> list[Image.Image]:
    sizes = [(320, 240), (90, 300), (640, 480), (48, 48), (20, 33), (1000, 61), (64, 65)]
    images = [product_image(seed, size) for seed, size in enumerate(sizes)]
    return [*images, images[0].convert("L"), images[1].convert("RGBA")]


# --- the tokenizer -------------------------------------------------------------------------


@pytest.mark.parametrize("model", [*SHIPPED, "ViT-B-32-256", "ViT-B-32"])
def test_token_ids_equal_open_clips(model):
    import open_clip

    lean = lean_tokenizer(model, model_config(model))
    assert lean is not None
    np.testing.assert_array_equal(
        lean(_texts()), embedder_module._open_clip().get_tokenizer(model)(_texts()).numpy()
    )
    assert isinstance(open_clip.get_tokenizer(model), open_clip.SimpleTokenizer)


@pytest.mark.parametrize("clean", ["whitespace", "canonicalize"])
def test_every_cleaning_mode_equals_open_clips(clean):
    from open_clip.tokenizer import SimpleTokenizer

    np.testing.assert_array_equal(
        ClipTokenizer(clean=clean)(_texts()), SimpleTokenizer(clean=clean)(_texts()).numpy()
    )


def test_plain_ascii_skips_ftfy_because_ftfy_leaves_it_unchanged():
    import ftfy

    from visualfinder.models.tokenizer import _PLAIN_ASCII

    rng = random.Random(1)
    alphabet = sorted(_PLAIN_ASCII)
    plain = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    plain += [t for t in _texts() if all(ch in _PLAIN_ASCII for ch in t)]
    assert all(ftfy.fix_text(t) == t for t in plain)


def test_models_with_their_own_tokenizer_fall_back_to_open_clip_with_one_info_line(caplog):
    caplog.set_level(logging.INFO, logger="visualfinder")
    assert lean_tokenizer("xlm-roberta-base-ViT-B-32", model_config("xlm-roberta-base-ViT-B-32")) is None
    assert lean_tokenizer("ViT-B-16-SigLIP", model_config("ViT-B-16-SigLIP")) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "visualfinder.models.tokenizer"]
    assert len(lines) == 2 and "Hugging Face tokenizer" in lines[0] and "SigLIP" in lines[1]


def test_every_open_clip_config_is_served_or_declined_by_its_tokenizer_kind():
    from visualfinder.models.embedder import _open_clip_config_dir

    for path in sorted(_open_clip_config_dir().glob("*.json")):
        cfg = json.loads(path.read_text())
        text_cfg = cfg.get("text_cfg", {})
        own = bool(text_cfg.get("hf_tokenizer_name")) or "siglip" in path.stem.lower()
        assert (unsupported_reason(path.stem, cfg) is not None) == own, path.stem


# --- the preprocessing ---------------------------------------------------------------------


VARIANTS = [
    {"size": 64},
    {"size": [48, 80], "resize_mode": "shortest"},
    {"size": 64, "resize_mode": "longest", "fill_color": 127, "interpolation": "bilinear"},
    {"size": [40, 56], "resize_mode": "longest"},
    {"size": 64, "resize_mode": "squash", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
]


def _open_clip_transform(cfg: dict):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    pp = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    return image_transform_v2(PreprocessCfg(**pp), is_train=False)


@pytest.mark.parametrize("model", SHIPPED)
def test_pixels_equal_open_clips_for_the_shipped_models(model):
    torch_side = Embedder(model, "none", "cpu", backend="torch").load()
    cfg = dict(torch_side._model.visual.preprocess_cfg)
    lean = Preprocessor(PreprocessSpec.from_config(cfg))
    for image in _images():
        np.testing.assert_allclose(lean(image), torch_side._transform(image).numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.get('resize_mode', 'shortest')}-{v['size']}")
def test_pixels_equal_open_clips_for_every_resize_mode(variant):
    lean = Preprocessor(PreprocessSpec.from_config(variant))
    reference = _open_clip_transform(variant)
    for image in _images():
        np.testing.assert_allclose(lean(image), reference(image).numpy(), atol=1e-6, rtol=0)


# --- the embeddings: what libraries already store stays valid ------------------------------


@pytest.mark.parametrize("model", SHIPPED)
def test_lean_onnx_embeddings_equal_torchs(model, tmp_path, fresh_process):
    torch_side = Embedder(model, "none", "cpu", backend="torch")
    lean = Embedder(model, "none", "cpu", backend="onnx", onnx_dir=tmp_path / "onnx")
    assert lean.backend == "onnx"
    np.testing.assert_allclose(lean.embed_images(_images()), torch_side.embed_images(_images()), atol=1e-4)
    np.testing.assert_allclose(
        lean.embed_texts(_texts()[:40]), torch_side.embed_texts(_texts()[:40]), atol=1e-4
    )
    assert lean._preprocessor is not None and isinstance(lean._tokenizer, ClipTokenizer)


# --- bad input: the export ---------------------------------------------------------------


def _export_dir(onnx_dir):
    (folder,) = [p for p in onnx_dir.iterdir() if p.is_dir()]
    return folder


def test_a_damaged_or_missing_export_is_made_again_with_one_line(
    tmp_path, fresh_process, monkeypatch, caplog
):
    onnx_dir = tmp_path / "onnx"
    first = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=onnx_dir)
    expected_images, expected_texts = first.embed_images(_images()), first.embed_texts(_texts()[:5])
    folder = _export_dir(onnx_dir)
    # Each tower's optimised graph: a folder with the graph and its weights beside it.
    optimised = {p.name.split(".")[0]: p for p in folder.glob("*.opt-*")}
    assert sorted(optimised) == ["image", "text"]
    for path in optimised.values():
        assert sorted(f.name for f in path.iterdir()) == ["graph.onnx", "weights.bin"]
    # A one-shot process (no prepacked weights) reads the same graphs and gets the same vectors.
    monkeypatch.setattr(embedder_module, "_engines", {})
    brief = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=onnx_dir, one_shot=True)
    np.testing.assert_allclose(brief.embed_images(_images()), expected_images, atol=1e-6)
    np.testing.assert_allclose(brief.embed_texts(_texts()[:5]), expected_texts, atol=1e-6)
    (folder / "image.onnx").write_bytes(b"not a model")
    shutil.rmtree(optimised["image"])
    weights = optimised["text"] / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:1000])  # damaged weights: rebuilt from the export
    (folder / "text.opt-0123456789.onnx").write_bytes(b"an optimised graph of the older layout")
    caplog.set_level(logging.INFO, logger="visualfinder")
    caplog.clear()
    monkeypatch.setattr(embedder_module, "_engines", {})
    again = Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=onnx_dir)
    np.testing.assert_allclose(again.embed_images(_images()), expected_images, atol=1e-6)
    np.testing.assert_allclose(again.embed_texts(_texts()[:5]), expected_texts, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0] and "\n" not in warnings[0]
    assert any("ignoring the damaged optimised graph" in r.getMessage() for r in caplog.records)
    assert weights.stat().st_size > 1000 and not (folder / "text.opt-0123456789.onnx").exists()
    # The text tower went missing: exported again, said in one line.
    (folder / "text.onnx").unlink()
    monkeypatch.setattr(embedder_module, "_engines", {})
    caplog.clear()
    np.testing.assert_allclose(
        Embedder("vf-tiny", "none", "cpu", backend="onnx", onnx_dir=onnx_dir).embed_texts(_texts()[:5]),
        expected_texts, atol=1e-6,
    )  # fmt: skip
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "the ONNX text tower of vf-tiny/random-seed0 is missing; exporting it again"
    ]


# --- prepared once -------------------------------------------------------------------------


def test_prepare_model_decides_once_per_machine_and_says_what_it_chose(monkeypatch, data_dir, capsys):
    monkeypatch.setenv("VISUALFINDER_BACKEND", "auto")
    assert main(["prepare-model", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] in ("onnx", "torch") and set(result["timings"]) == {
        "onnx",
        "torch",
        "onnx_text",
        "torch_text",
    }
    meta_file = _export_dir(data_dir / "onnx") / "export.json"
    meta = json.loads(meta_file.read_text())
    assert meta["choice"] == result["backend"] and meta["machine"] == embedder_module.machine_id()
    before = meta_file.stat().st_mtime_ns
    race = embedder_module._race
    monkeypatch.setattr(embedder_module, "_race", lambda *a: pytest.fail("the backends were timed again"))
    monkeypatch.setattr(embedder_module, "_engines", {})
    assert main(["prepare-model"]) == 0
    assert f"is ready on cpu with the {result['backend']} backend" in capsys.readouterr().out
    assert meta_file.stat().st_mtime_ns == before
    # The same data dir on another machine: the verdict is measured again there.
    meta["machine"] = "another-host x86_64 64"
    meta_file.write_text(json.dumps(meta))
    monkeypatch.setattr(embedder_module, "_race", race)
    monkeypatch.setattr(embedder_module, "_engines", {})
    assert main(["prepare-model", "--json"]) == 0
    capsys.readouterr()
    assert json.loads(meta_file.read_text())["machine"] == embedder_module.machine_id()


# --- no torch on the CPU path --------------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from imagegen import write_image
    from visualfinder.cli.main import main

    heavy = ("torch", "torchvision", "open_clip")
    catalog, image, indexed = Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    loaded, codes = {}, {}

    def step(name, argv):
        codes[name] = main(argv)
        loaded[name] = sorted(m for m in heavy if m in sys.modules)

    step("status", ["status", "--json"])
    step("search --text", ["search", "--text", "a red leather armchair", "-k", "3"])
    step("search IMAGE", ["search", image, "-k", "3"])
    step("search --similar", ["search", "--similar", indexed, "-k", "3"])
    step("search --query", ["search", "--query", "oak table type:jpg", "-k", "3"])
    step("duplicates", ["duplicates"])
    write_image(catalog / "new.jpg", 99)
    step("index", ["index"])

    from visualfinder.config import Settings
    from visualfinder.events import LibraryChanged
    from visualfinder.ingest.watcher import Watcher
    from visualfinder.library.facade import open_library

    library = open_library(Settings.load())
    library.embedder.warm_in_background(("image",))
    batch = threading.Event()
    library.events.subscribe(lambda e: batch.set() if isinstance(e, LibraryChanged) and e.report and e.report.added else None)
    watcher = Watcher(library)
    watcher.start()
    write_image(catalog / "watched.jpg", 98)
    codes["watch"] = 0 if batch.wait(120) else 1
    watcher.stop(timeout=None)
    library.close()
    loaded["watch"] = sorted(m for m in heavy if m in sys.modules)
    print(json.dumps({"codes": codes, "loaded": loaded}))
    """
)


@pytest.mark.skipif(gpu_possible(), reason="a GPU may be here: finding it rightly imports torch")
def test_a_cpu_machine_searches_indexes_and_watches_without_torch(tmp_path, data_dir):
    import tomli_w
    from watchutil import FAST_WATCH

    catalog = tmp_path / "catalog"
    files = make_catalog(catalog, 6)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "settings.toml").write_text(tomli_w.dumps(FAST_WATCH))
    env = subprocess_env(VISUALFINDER_BACKEND="onnx", VISUALFINDER_DEVICE="auto")
    prepared = subprocess.run([sys.executable, "-m", "visualfinder", "index", str(catalog), "--watch"],
                              capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    assert "preparing vf-tiny/random-seed0 for this machine" in prepared.stderr
    query = write_image(tmp_path / "query.jpg", 3, size=(4000, 3000))
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", PROBE, tests_dir, str(catalog), str(query), str(files[0])],
                         capture_output=True,
                         text=True, env=env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(code == 0 for code in result["codes"].values()), (result, out.stderr)
    assert result["loaded"] == {name: [] for name in result["loaded"]}, out.stderr
    assert "Traceback" not in out.stderr
    assert files  # the catalog was there for every step


def test_help_imports_neither_numpy_nor_the_model():
    code = "import sys; from visualfinder.cli.main import build_parser; build_parser().format_help(); " \
           "print(sorted(m for m in ('numpy', 'torch', 'onnxruntime', 'usearch', 'sqlite_utils') if m in sys.modules))"  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
