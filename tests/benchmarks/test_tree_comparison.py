"""This checkout against another one (say, the commit before a refactoring), in the same run.

    VF_BENCH_BASE=/path/to/other/checkout pytest tests/benchmarks/test_tree_comparison.py -s

Each round indexes the same generated JPEGs into a fresh library with each checkout, in a
fresh process (tree_probe.py), alternating which goes first; then it rescans and times image,
text and similar queries. Ratios are this checkout / the other one (below 1: this one is
faster). Settings: VF_BENCH_IMAGES (300), VF_BENCH_ROUNDS (3), VF_BENCH_QUERIES (100),
VF_BENCH_MODEL (vf-tiny: the pipeline's own cost shows; ViT-B-32-256 for the model's share).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imagegen import write_image
from report import env_int, machine, spread, table

HERE = Path(__file__).parent
THIS = HERE.parent.parent


def _probe(tree: Path, images: Path, data_dir: Path, model: str, queries: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(HERE), str(HERE.parent)])}
    out = subprocess.run(
        [sys.executable, str(HERE / "tree_probe.py"), str(images), str(data_dir), model, str(queries)],
        capture_output=True, text=True, env=env, check=True, timeout=3600, cwd=str(data_dir.parent),
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_this_checkout_against_another(tmp_path):
    base = os.environ.get("VF_BENCH_BASE")
    if not base:
        pytest.skip("set VF_BENCH_BASE to another checkout of visualfinder")
    trees = {"this": THIS, "base": Path(base).resolve()}
    n, rounds = env_int("VF_BENCH_IMAGES", 300), env_int("VF_BENCH_ROUNDS", 3)
    queries, model = env_int("VF_BENCH_QUERIES", 100), os.environ.get("VF_BENCH_MODEL", "vf-tiny")
    images = tmp_path / "images"
    for i in range(n):
        write_image(images / f"p{i:05d}.jpg", i, size=(1024, 768))
    runs: dict[str, list[dict]] = {"this": [], "base": []}
    for r in range(rounds):
        order = ["this", "base"] if r % 2 == 0 else ["base", "this"]
        for name in order:
            runs[name].append(_probe(trees[name], images, tmp_path / f"{name}-{r}", model, queries))
    for name in runs:
        assert all(run["added"] == n for run in runs[name]), runs[name]
    rows = []
    for label, pick in [
        ("open + model load (s)", lambda run: run["open_s"]),
        (f"index {n} JPEGs (s)", lambda run: run["index_s"]),
        ("index CPU time (s)", lambda run: run["index_cpu_s"]),
        ("rescan, unchanged (s)", lambda run: run["rescan_s"]),
        ("image query p50 (ms)", lambda run: run["p50_s"]["image"] * 1000),
        ("text query p50 (ms)", lambda run: run["p50_s"]["text"] * 1000),
        ("similar query p50 (ms)", lambda run: run["p50_s"]["similar"] * 1000),
    ]:
        this = [pick(run) for run in runs["this"]]
        other = [pick(run) for run in runs["base"]]
        ratios = np.array(this) / np.array(other)
        rows.append([label, spread(this), spread(other), spread(ratios)])
    table(f"This checkout vs {trees['base'].name}, {model}, {rounds} rounds ({machine()})",
          ["what", "this", "base", "this / base"], rows)  # fmt: skip
