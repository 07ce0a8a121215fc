"""Fast start (issue 16): whole-process CLI times on a CPU, this checkout against another, same run.

    VF_BENCH_BASE=/path/to/other/checkout pytest tests/benchmarks/test_fast_start.py -s

Each command runs as a new user would run it, `python -m visualfinder ...` in a fresh process,
with the model prepared (exported to ONNX Runtime) beforehand and bytecode cached (as an
installed package has it): medians of VF_BENCH_ROUNDS (5) runs, the trees alternating. Rows:

- `search --text` on a library of VF_BENCH_IMAGES (120) camera JPEGs (4000x3000);
- `search --text` on VF_BENCH_SCALE_VECTORS (1,000,000) synthetic vectors, index memory-mapped;
- `search IMAGE` with a 12 MP JPEG as the query;
- `--help`;
- `index` fixed cost: a whole `index` run of one camera JPEG in a new library, less that
  file's decoding and embedding measured in-process (what a run costs beyond its files), and
  the whole `index` of all the JPEGs for reference.

Model: VF_BENCH_MODEL (ViT-B-32-256, random weights: nothing to download), backend onnx, device auto.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from report import env_int, machine, table
from synthetic import build_catalog, camera_jpeg

HERE = Path(__file__).parent
THIS = HERE.parent.parent
TARGETS = {
    "search_text": 0.5,
    "search_text_scale": 1.0,
    "search_image": 0.7,
    "help": 0.25,
    "index_fixed": 1.5,
}


def _env(tree: Path, data_dir: Path, model: str, pyc: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(tree), str(HERE), str(HERE.parent)]), PYTHONPYCACHEPREFIX=str(pyc),
        VISUALFINDER_DATA_DIR=str(data_dir), VISUALFINDER_MODEL=model, VISUALFINDER_PRETRAINED="none",
        VISUALFINDER_DEVICE="auto", VISUALFINDER_BACKEND="onnx",
    )  # fmt: skip
    return env


# Outside any checkout: `python -m` puts the working directory first on sys.path, before PYTHONPATH.
NEUTRAL_CWD = Path(tempfile.gettempdir())


def _run(env: dict, *args: str) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "visualfinder", *args], capture_output=True, text=True, env=env,
                         timeout=3600, cwd=NEUTRAL_CWD)  # fmt: skip
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stderr[-2000:]
    return seconds


def _decode_embed_seconds(env: dict, image: Path) -> float:
    """In-process: decode one camera JPEG at the library's side, preprocess and embed it (model warm)."""
    code = (
        "import sys, time; from visualfinder.config import Settings; from visualfinder.library.facade import "
        "open_library; lib = open_library(Settings.load()); lib.embedder.warm(('image',)); "
        "t = time.perf_counter(); img = lib.decode_query_image(sys.argv[1]).image; lib.embedder.embed_images([img]); "
        "print(time.perf_counter() - t); lib.close()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(image)], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1])


def _fresh_library(prepared: Path, dest: Path) -> Path:
    """A new data dir holding only the prepared model's exports (hard links: no copy of 100s of MB)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copytree(prepared / "onnx", dest / "onnx", copy_function=os.link)
    return dest


@pytest.mark.timeout(4 * 3600)
def test_fast_start(tmp_path):
    from visualfinder.models.embedder import model_config, model_key

    base = os.environ.get("VF_BENCH_BASE")
    trees = {"this": THIS, **({"base": Path(base).resolve()} if base else {})}
    model = os.environ.get("VF_BENCH_MODEL", "ViT-B-32-256")
    n_images, rounds = env_int("VF_BENCH_IMAGES", 120), env_int("VF_BENCH_ROUNDS", 5)
    n_vectors = env_int("VF_BENCH_SCALE_VECTORS", 1_000_000)
    keep = Path(os.environ.get("VF_BENCH_KEEP", tmp_path / "keep"))
    images = keep / "camera"
    for i in range(n_images):
        path = images / f"camera_{i:04d}.jpg"
        if not path.exists():
            camera_jpeg(path, 1000 + i)
    query = camera_jpeg(tmp_path / "query.jpg", 7)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(images / "camera_0000.jpg", one / "photo.jpg")
    pyc = {name: tmp_path / f"pyc-{name}" for name in trees}

    # One library for every tree (same schema): indexed, and the model prepared, by this checkout.
    library = keep / "library"
    this_env = _env(THIS, library, model, pyc["this"])
    started = time.perf_counter()
    _run(this_env, "index", str(images))
    first_index = time.perf_counter() - started
    scale = keep / f"scale-{n_vectors}"
    if not (scale / "catalog.db").exists():
        _fresh_library(library, scale)
        build_catalog(
            scale / "catalog.db", n_vectors, model_key(model, "none"), dim=model_config(model)["embed_dim"]
        )
        _run(_env(THIS, scale, model, pyc["this"]), "rebuild-index")

    def envs(data_dir: Path) -> dict[str, dict]:
        return {name: _env(tree, data_dir, model, pyc[name]) for name, tree in trees.items()}

    lib_envs, scale_envs = envs(library), envs(scale)
    for name in trees:  # warm-up: bytecode caches, optimised graphs, the OS file cache
        _run(lib_envs[name], "search", "--text", "warm up", "-k", "3")
        _run(lib_envs[name], "search", str(query), "-k", "3")
        _run(scale_envs[name], "search", "--text", "warm up", "-k", "3")
    times: dict[str, dict[str, list[float]]] = {name: {key: [] for key in TARGETS} for name in trees}
    totals: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(rounds):
        for name in trees if r % 2 == 0 else list(reversed(list(trees))):
            t = times[name]
            t["search_text"].append(
                _run(lib_envs[name], "search", "--text", "a red leather armchair", "-k", "10")
            )
            t["search_text_scale"].append(
                _run(scale_envs[name], "search", "--text", "a red leather armchair", "-k", "10")
            )
            t["search_image"].append(_run(lib_envs[name], "search", str(query), "-k", "10"))
            t["help"].append(_run(lib_envs[name], "--help"))
            fresh = _fresh_library(library, tmp_path / f"fresh-{name}")
            env = _env(trees[name], fresh, model, pyc[name])
            whole = _run(env, "index", str(one))
            t["index_fixed"].append(whole - _decode_embed_seconds(env, one / "photo.jpg"))
    for name in trees:  # the whole index of every JPEG, once per tree (minutes with a real model)
        env = _env(trees[name], _fresh_library(library, tmp_path / f"all-{name}"), model, pyc[name])
        totals[name].append(_run(env, "index", str(images)))

    labels = {
        "search_text": f"search --text, {n_images} images (s)",
        "search_text_scale": f"search --text, {n_vectors:,} vectors, mmap (s)",
        "search_image": "search IMAGE, 12 MP JPEG (s)",
        "help": "--help (s)",
        "index_fixed": "index fixed cost, outside decode+embed (s)",
    }
    header = ["what", "target", *[f"{name} median" for name in trees]]
    if "base" in trees:
        header.append("this / base")
    rows = []
    for key, label in labels.items():
        row = [label, f"<= {TARGETS[key]}", *[f"{np.median(times[name][key]):.3f}" for name in trees]]
        if "base" in trees:
            row.append(f"{np.median(times['this'][key]) / np.median(times['base'][key]):.2f}")
        rows.append(row)
    row = [
        f"index {n_images} camera JPEGs, whole process (s)",
        "-",
        *[f"{totals[name][0]:.1f}" for name in trees],
    ]
    if "base" in trees:
        row.append(f"{totals['this'][0] / totals['base'][0]:.2f}")
    rows.append(row)
    rows.append(["first index incl. preparing the model (s, this)", "-", f"{first_index:.1f}",
                 *([""] * (len(header) - 3))])  # fmt: skip
    table(f"Fast start, {model} (random weights), onnx, {rounds} rounds ({machine()})", header, rows)
    print(json.dumps({"times": times, "totals": totals, "first_index": first_index}))
    if not base:
        pytest.skip("set VF_BENCH_BASE to compare with another checkout (the figures above are this one's)")
