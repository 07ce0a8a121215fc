"""OpenMP wait policy: `index` on the main thread (the CLI), on a worker thread (the app) and
through the watcher, and the model alone on batches, with the default passive wait and with
spinning (OMP_WAIT_POLICY=ACTIVE, libgomp's behaviour before visualfinder set it), same run.

Before the fix, `index` on the process main thread ran 5-6x slower than on a worker thread on
this shared 2-core host: torch's OpenMP workers spun at every barrier while the decode threads
needed the cores. Each measurement runs in a fresh process (the policy is read when torch
loads); rounds interleave the policies so the host's drift hits both alike.

    pytest tests/benchmarks/test_omp_wait.py -s
    VF_BENCH_FILES=2000 VF_BENCH_ROUNDS=2 pytest tests/benchmarks/test_omp_wait.py -s

Environment: VF_BENCH_FILES (1500 vf-tiny product images), VF_BENCH_ROUNDS (2),
VF_BENCH_MODEL (ViT-B-32-256 for the model-alone batches), VF_BENCH_BATCHES (4 of 16).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imagegen import make_catalog
from report import env_int, machine, spread, table

FILES = env_int("VF_BENCH_FILES", 1500)
ROUNDS = env_int("VF_BENCH_ROUNDS", 2)
BATCHES = env_int("VF_BENCH_BATCHES", 4)
MODEL = os.environ.get("VF_BENCH_MODEL", "ViT-B-32-256")
HERE = Path(__file__).parent
POLICIES = {"passive (default)": None, "active (spinning)": "ACTIVE"}


def _probe(policy: str | None, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent.parent), str(HERE)])
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, str(HERE / "omp_probe.py"), *args], capture_output=True, text=True,
                         env=env, timeout=3600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli_index(policy: str | None, data_dir: Path, folder: Path) -> dict:
    """`python -m visualfinder index` as a user runs it (process start included)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=str(HERE.parent.parent), VISUALFINDER_DATA_DIR=str(data_dir), VISUALFINDER_MODEL="vf-tiny",
               VISUALFINDER_PRETRAINED="none", VISUALFINDER_DEVICE="cpu", VISUALFINDER_BACKEND="torch")  # fmt: skip
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    before = os.times()
    out = subprocess.run([sys.executable, "-m", "visualfinder", "index", str(folder)], capture_output=True,
                         text=True, env=env, timeout=3600)  # fmt: skip
    after = os.times()
    assert out.returncode == 0, out.stderr[-3000:]
    return {"wall": after.elapsed - before.elapsed,
            "cpu": after.children_user + after.children_system - before.children_user - before.children_system}  # fmt: skip


@pytest.mark.timeout(4 * 3600)
def test_wait_policy_on_every_indexing_path_and_the_model_alone(tmp_path):
    folder = tmp_path / "images"
    make_catalog(folder, FILES)
    print(f"\n{FILES} vf-tiny product images; {machine()}", flush=True)
    paths = ["CLI `index` (main thread, process start included)", "`index` on the main thread",
             "`index` on a worker thread (app)", "watcher (copy into a watched folder)",
             f"{MODEL} alone, {BATCHES} batches of 16"]  # fmt: skip
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_ in range(ROUNDS):
        for label, policy in POLICIES.items():
            for path in paths:
                data_dir = tmp_path / f"lib-{round_}-{policy}-{paths.index(path)}"
                shutil.rmtree(data_dir, ignore_errors=True)
                if path.startswith("CLI"):
                    r = _cli_index(policy, data_dir, folder)
                elif path.startswith(MODEL):
                    r = _probe(policy, "embed", MODEL, str(BATCHES))
                else:
                    mode = "main" if "main" in path else "thread" if "worker" in path else "watcher"
                    r = _probe(policy, mode, str(data_dir), str(folder))
                    assert r["policy"] == policy or (policy is None and r["policy"] == "PASSIVE"), r
                results.setdefault((path, label), []).append((r["wall"], r["cpu"]))
                print(
                    f"  round {round_ + 1} {label:18} {path}: {r['wall']:.1f}s wall, {r['cpu']:.1f}s CPU",
                    flush=True,
                )
    rows = []
    for path in paths:
        (pw, pc), (aw, ac) = (np.array(results[(path, label)]).T for label in POLICIES)
        rows.append([path, spread(pw), spread(aw), spread(aw / pw), spread(pc), spread(ac)])
    table(f"OpenMP wait policy, wall seconds median (min-max) of {ROUNDS} rounds",
          ["path", "passive wall s", "active wall s", "active / passive", "passive CPU s", "active CPU s"], rows)  # fmt: skip
    main_passive = np.median([w for w, _ in results[(paths[1], "passive (default)")]])
    thread_passive = np.median([w for w, _ in results[(paths[2], "passive (default)")]])
    print(
        f"main thread / worker thread, passive: {main_passive / thread_passive:.2f} (was 5-6x with spinning)"
    )
