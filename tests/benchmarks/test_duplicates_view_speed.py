"""The duplicates window on a 16k-image library: time to first groups against the CLI's
`visualfinder duplicates`, and how long the GUI thread waits meanwhile.

Run: pytest tests/benchmarks/test_duplicates_view_speed.py -s
(VF_BENCH_DUP_IMAGES sets the size, VF_BENCH_ROUNDS the rounds; VF_BENCH_BASE=<another checkout>
measures it too, in the same run, alternating). Each measurement is a fresh process
(duplicates_probe.py: the real main window, offscreen) on its own copy of the library, next to
the CLI measured on the same copy.

The library is synthetic (tests/benchmarks/synthetic.py's vector mixture, real catalog rows,
no files on disk): every tenth image is a byte-identical copy of the one before it (tier 1) and
every tenth-plus-one a near copy (cosine ~0.99, tier 3: without files there is no perceptual
check, so no tier 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from report import env_int, machine, spread, table
from synthetic import CATALOG_ROOT, centres_for, mixture

from visualfinder.catalog.store import Catalog, CatalogChanges, ImageWrite
from visualfinder.config import Settings
from visualfinder.library.facade import open_library

N = env_int("VF_BENCH_DUP_IMAGES", 16_000)
HERE = Path(__file__).parent
THIS = HERE.parent.parent


def _settings(data_dir: Path) -> Settings:
    return Settings.load(data_dir, model="vf-tiny", pretrained="none", device="cpu", backend="torch")


def build_library(data_dir: Path) -> int:
    """N embedded rows with planted duplicates; returns the number of planted pairs."""
    with open_library(_settings(data_dir)) as library:  # records the model, creates the schema
        key, dim = library.model_key, library.vector_index.spec.ndim
    catalog = Catalog(data_dir / "catalog.db")
    rng = np.random.default_rng(7)
    planted = 0
    try:
        root = catalog.add_folder(CATALOG_ROOT)
        vectors = np.concatenate(list(mixture(N, dim, seed=3, centres=centres_for(N))))
        for i in range(1, N):
            if i % 10 == 0:
                vectors[i] = vectors[i - 1]
                planted += 1
            elif i % 10 == 1 and i > 1:
                near = vectors[i - 1] + rng.standard_normal(dim).astype(np.float32) * (0.1 / np.sqrt(dim))
                vectors[i] = near / np.linalg.norm(near)
                planted += 1
        changes = CatalogChanges()
        for i, vector in enumerate(vectors):
            digest = f"{i - 1 if i % 10 == 0 and i else i:032x}"
            changes.inserts.append(ImageWrite(
                f"{CATALOG_ROOT}/d{i % 100}/img_{i:07d}.jpg", root.id, 1000 + i, 1_700_000_000_000_000_000 + i,
                content_hash=digest, width=2000, height=1500, format="JPEG", embedding=vector.astype(np.float16),
                model_key=key,
            ))  # fmt: skip
        catalog.apply(changes)
    finally:
        catalog.close()
    with open_library(_settings(data_dir)) as library:  # builds and saves the index once
        assert len(library.vector_index) == N
    return planted


def cli_duplicates(tree: Path, data_dir: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), VISUALFINDER_DATA_DIR=str(data_dir),
               VISUALFINDER_MODEL="vf-tiny", VISUALFINDER_PRETRAINED="none", VISUALFINDER_DEVICE="cpu",
               VISUALFINDER_BACKEND="torch")  # fmt: skip
    start = time.perf_counter()
    # Outside any checkout: `python -m` puts the working folder first on sys.path.
    out = subprocess.run([sys.executable, "-m", "visualfinder", "duplicates", "--json"], capture_output=True,
                         text=True, env=env, timeout=1800, cwd=str(data_dir.parent))  # fmt: skip
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stderr[-2000:]
    return seconds


def _probe(tree: Path, data_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, str(HERE / "duplicates_probe.py"), str(data_dir)], capture_output=True,
                         text=True, env=env, timeout=1800, cwd=str(data_dir.parent))  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_duplicates_window_shows_groups_in_the_clis_time(tmp_path):
    trees = {"this": THIS}
    if os.environ.get("VF_BENCH_BASE"):
        trees["base"] = Path(os.environ["VF_BENCH_BASE"]).resolve()
    rounds = env_int("VF_BENCH_ROUNDS", 2)
    built = tmp_path / "built"
    started = time.perf_counter()
    planted = build_library(built)
    print(f"\nsynthetic library: {N:,} images, {planted:,} planted copies, built in "
          f"{time.perf_counter() - started:.1f} s; {machine()}")  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(rounds):
        for name in list(trees) if r % 2 == 0 else list(trees)[::-1]:
            data_dir = tmp_path / f"{name}-{r}" / "library"  # a copy each: a tree may migrate it
            shutil.copytree(built, data_dir)
            cli = cli_duplicates(trees[name], data_dir)
            runs[name].append({"cli_s": cli, **_probe(trees[name], data_dir)})
    rows = []
    for label, pick in [
        ("CLI `duplicates --json`, process (s)", lambda run: run["cli_s"]),
        ("window: first groups shown (s)", lambda run: run["first_s"]),
        ("window: first groups / CLI", lambda run: run["first_s"] / run["cli_s"]),
        ("window: every group listed (s)", lambda run: run["complete_s"]),
        ("GUI wait between 5 ms ticks, max (ms)", lambda run: max(run["gaps_ms"])),
        ("  p99 (ms)", lambda run: float(np.percentile(run["gaps_ms"], 99))),
        ("  p90 (ms)", lambda run: float(np.percentile(run["gaps_ms"], 90))),
        ("  median (ms)", lambda run: float(np.median(run["gaps_ms"]))),
        ("  waits over 100 ms", lambda run: sum(g > 100 for g in run["gaps_ms"])),
    ]:
        rows.append([label, *(spread([pick(run) for run in runs[name]]) for name in trees)])
    print(table(f"duplicates window, {N:,} images, {rounds} rounds (median (min-max))", ["", *trees], rows))
    groups = {run["groups"] for name in trees for run in runs[name]}
    print(f"groups: {sorted(groups)}")
    assert all(run["first_s"] > 0 for name in trees for run in runs[name])
