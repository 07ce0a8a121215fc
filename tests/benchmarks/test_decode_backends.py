"""Decode backends on this machine: threads (the path before worker processes) vs processes vs
auto (what the library picks here), same run, rounds interleaved.

    pytest tests/benchmarks/test_decode_backends.py -s
    VF_BENCH_MODEL=vf-tiny VF_BENCH_ROUNDS=3 pytest tests/benchmarks/test_decode_backends.py -s

Each round indexes the same files into a fresh library per backend (order rotated each round),
with one warm model shared by all: camera JPEGs (4000x3000 q90, ~3 MB) and 800x800 product
JPEGs. Reports images/s as median (min-max) and each backend's rate over the threads rate in
the same round. Environment: VF_BENCH_JPEGS (24), VF_BENCH_SMALL (96), VF_BENCH_ROUNDS (2),
VF_BENCH_MODEL (ViT-B-32-256, random weights), VF_BENCH_DECODE_BACKENDS (threads,processes,auto).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from imagegen import write_image
from report import env_int, env_list, machine, spread, table
from synthetic import camera_jpeg

from visualfinder.config import Settings
from visualfinder.library.facade import open_library

JPEGS = env_int("VF_BENCH_JPEGS", 24)
SMALL = env_int("VF_BENCH_SMALL", 96)
ROUNDS = env_int("VF_BENCH_ROUNDS", 2)
MODEL = os.environ.get("VF_BENCH_MODEL", "ViT-B-32-256")
BACKENDS = env_list("VF_BENCH_DECODE_BACKENDS", "threads,processes,auto")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode-backends")
    for i in range(JPEGS):
        camera_jpeg(root / "camera" / f"camera_{i:04d}.jpg", 1000 + i)
    for i in range(SMALL):
        write_image(root / "small" / f"product_{i:05d}.jpg", 5000 + i, (800, 800))
    return {"camera": root / "camera", "small": root / "small"}


@pytest.mark.timeout(4 * 3600)
def test_decode_backends_same_run(folders, tmp_path):
    rates: dict[tuple[str, str], list[float]] = {}
    cpu_s: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    runs = 0
    for r in range(ROUNDS):
        for name, folder in folders.items():
            order = BACKENDS[r % len(BACKENDS) :] + BACKENDS[: r % len(BACKENDS)]
            this_round = {}
            for backend in order:
                runs += 1
                settings = Settings.load(tmp_path / f"lib{runs}", model=MODEL, pretrained="none", device="cpu",
                                         backend="torch", decode_backend=backend)  # fmt: skip
                library = open_library(settings)
                try:
                    library.embedder.load()
                    cpu, t = time.process_time(), time.perf_counter()
                    report = library.index([folder])
                    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
                finally:
                    library.close()
                assert report.added == len(list(folder.iterdir())) and not report.errors
                this_round[backend] = report.added / seconds
                rates.setdefault((name, backend), []).append(report.added / seconds)
                cpu_s.setdefault((name, backend), []).append(cpu)  # this process only, not its workers
            for backend in order:
                ratios.setdefault((name, backend), []).append(this_round[backend] / this_round["threads"])
    rows = [[f"{name} ({JPEGS if name == 'camera' else SMALL} files)", backend, spread(rates[(name, backend)]),
             spread(ratios[(name, backend)]), f"{np.median(cpu_s[(name, backend)]):.1f}"]
            for name in folders for backend in BACKENDS]  # fmt: skip
    table(f"Decode backends, {MODEL}, {ROUNDS} rounds ({machine()})",
          ["files", "backend", "images/s", "/ threads (same round)", "main process CPU s"], rows)  # fmt: skip
