"""Indexing throughput: `Library.index` end to end vs the model alone vs a naive indexer, same run.

Files: camera-size JPEGs (4000x3000, q90, ~3 MB with sensor-like noise) and small PNGs. For each
backend, every round times, back to back on the same files and the same model object:
- the model alone embedding the same number of pre-decoded tensors (same threads, same batch);
- `Library.index` into a fresh library (read, hash, draft decode, thumbnail, preprocess in the
  decode pool; embed; batched commits; index save);
- a naive indexer as simple tools do it: full decode, resize, embed in batches of 8 with no
  overlap, one INSERT + commit per row.
Targets: pipeline / model >= 0.85, pipeline / naive >= 2. Ratios are per round (the host is
shared and noisy), reported as median (min-max).

    pytest tests/benchmarks/test_indexing_speed.py -s
    VF_BENCH_JPEGS=16 VF_BENCH_ROUNDS=1 pytest tests/benchmarks/test_indexing_speed.py -s

Environment: VF_BENCH_JPEGS (48), VF_BENCH_PNGS (16), VF_BENCH_ROUNDS (3), VF_BENCH_BACKENDS
(torch,onnx), VF_BENCH_MODEL (ViT-B-32-256, random weights), VF_BENCH_LEVERS
("threads:workers" pairs for test_pipeline_levers, default 1:1,2:1,1:2,2:2), VF_BENCH_PREFETCH
(1,2,4 batches), VF_BENCH_KEEP=DIR.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report import env_int, env_list, machine, spread, table
from synthetic import image_folder

from visualfinder.config import Settings
from visualfinder.ingest import pipeline as pipeline_module
from visualfinder.ingest.imaging import decode_file
from visualfinder.library.facade import open_library

JPEGS = env_int("VF_BENCH_JPEGS", 48)
PNGS = env_int("VF_BENCH_PNGS", 16)
ROUNDS = env_int("VF_BENCH_ROUNDS", 3)
BACKENDS = env_list("VF_BENCH_BACKENDS", "torch,onnx")
MODEL = os.environ.get("VF_BENCH_MODEL", "ViT-B-32-256")
LEVERS = [tuple(int(x) for x in pair.split(":")) for pair in env_list("VF_BENCH_LEVERS", "1:1,2:1,1:2,2:2")]
PREFETCH = [int(x) for x in env_list("VF_BENCH_PREFETCH", "1,2,4")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = Path(os.environ.get("VF_BENCH_KEEP") or tmp_path_factory.mktemp("indexing"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="module")
def files(workspace) -> list[Path]:
    started = time.perf_counter()
    made = image_folder(workspace / "images", JPEGS, PNGS)
    print(f"\n{len(made)} files ready in {time.perf_counter() - started:.0f}s; {machine()}", flush=True)
    return made


class Bench:
    """One backend and thread setting: a warm model and fresh libraries that share its ONNX export."""

    def __init__(self, workspace: Path, backend: str, threads: int, workers: int):
        self.root = workspace / f"{backend}-t{threads}-w{workers}"
        self.exports = workspace / f"onnx-{backend}"
        self.backend, self.threads, self.workers = backend, threads, workers
        self.runs = 0

    def settings(self, data_dir: Path) -> Settings:
        return Settings.load(data_dir, model=MODEL, pretrained="none", device="cpu", backend=self.backend,
                             model_threads=self.threads, decode_workers=self.workers)  # fmt: skip

    def fresh_library(self):
        self.runs += 1
        data_dir = self.root / f"lib{self.runs}"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        self.exports.mkdir(parents=True, exist_ok=True)
        (data_dir / "onnx").symlink_to(self.exports, target_is_directory=True)  # export once per backend
        return open_library(self.settings(data_dir))

    def index(self, folder: Path) -> tuple[float, float]:
        library = self.fresh_library()
        try:
            library.embedder.load()
            start, cpu = time.perf_counter(), time.process_time()
            report = library.index([folder])
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert report.added == len(list(folder.iterdir())) and not report.errors, report.summary()
            return seconds, cpu
        finally:
            library.close()


def _model_alone(embedder, tensors) -> tuple[float, float]:
    """(wall, CPU) seconds of the model embedding pre-decoded tensors in its batch size."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(tensors), embedder.batch_size):
        embedder.embed_batch(tensors[i : i + embedder.batch_size])
    return time.perf_counter() - start, time.process_time() - cpu


def _naive(embedder, files: list[Path], db: Path) -> tuple[float, float]:
    """What simple tools do: full decode, resize, small batches, no overlap, a commit per row."""
    db.unlink(missing_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE images(path TEXT PRIMARY KEY, embedding BLOB)")
    for i in range(0, len(files), 8):
        chunk = files[i : i + 8]
        tensors = []
        for path in chunk:
            with Image.open(path) as img:
                tensors.append(embedder.preprocess(img.convert("RGB")))
        vectors = embedder.embed_batch(tensors)
        for path, vector in zip(chunk, vectors):
            conn.execute("INSERT INTO images VALUES (?, ?)", (str(path), vector.astype(np.float16).tobytes()))
            conn.commit()
    conn.close()
    return time.perf_counter() - start, time.process_time() - cpu


def _tensors(embedder, files):
    return [embedder.preprocess(decode_file(f, min_side=embedder.image_size).image) for f in files]


@pytest.mark.timeout(4 * 3600)
def test_indexing_throughput_vs_model_alone_and_naive(workspace, files):
    folder = files[0].parent
    rows = []
    for backend in BACKENDS:
        bench = Bench(workspace, backend, threads=0, workers=0)
        warm = bench.fresh_library()  # loads (and on first use exports) the model
        embedder = warm.embedder.load()
        tensors = _tensors(embedder, files)
        warm.close()
        _model_alone(embedder, tensors[: embedder.batch_size])  # warm-up
        model, pipe, naive = [], [], []
        for _ in range(ROUNDS):
            model.append(_model_alone(embedder, tensors))
            pipe.append(bench.index(folder))
            naive.append(_naive(embedder, files, workspace / "naive.db"))
            print(f"  {backend}: model {len(files) / model[-1][0]:.2f}/s, pipeline {len(files) / pipe[-1][0]:.2f}/s, "
                  f"naive {len(files) / naive[-1][0]:.2f}/s", flush=True)  # fmt: skip
        (model, model_cpu), (pipe, pipe_cpu), (naive, naive_cpu) = (
            np.array(x).T for x in (model, pipe, naive)
        )
        rows.append([
            f"{backend}", f"{MODEL}, batch {embedder.batch_size}",
            spread(len(files) / model), spread(len(files) / pipe), spread(len(files) / naive),
            spread(model / pipe), spread(naive / pipe), spread(model_cpu / pipe_cpu), spread(naive_cpu / pipe_cpu),
        ])  # fmt: skip
    table(
        f"Indexing {JPEGS} JPEGs 4000x3000 + {PNGS} PNGs, images/s and ratios, median (min-max) of {ROUNDS} rounds",
        ["backend", "model", "model alone", "Library.index", "naive", "index / model (>= 0.85)",
         "index / naive (>= 2)", "CPU: model / index", "CPU: naive / index"],
        rows,
    )  # fmt: skip


@pytest.mark.timeout(6 * 3600)
def test_pipeline_levers(workspace, files):
    """Model threads x decode workers (and prefetch depth): what the defaults are chosen from."""
    folder = files[0].parent
    rows = []
    for backend in BACKENDS:
        for threads, workers in LEVERS:
            bench = Bench(workspace, backend, threads, workers)
            warm = bench.fresh_library()
            embedder = warm.embedder.load()
            tensors = _tensors(embedder, files)
            warm.close()
            _model_alone(embedder, tensors[: embedder.batch_size])
            for prefetch in PREFETCH:
                pipeline_module.PREFETCH_BATCHES = prefetch
                model, pipe = [], []
                for _ in range(max(1, ROUNDS - 1)):
                    model.append(_model_alone(embedder, tensors))
                    pipe.append(bench.index(folder))
                (model, model_cpu), (pipe, pipe_cpu) = (np.array(x).T for x in (model, pipe))
                rows.append([backend, threads, workers, prefetch, spread(len(files) / model),
                             spread(len(files) / pipe), spread(model / pipe), spread(model_cpu / pipe_cpu)])  # fmt: skip
                print("  ", rows[-1], flush=True)
            pipeline_module.PREFETCH_BATCHES = 2
    table(
        "Pipeline levers (images/s; ratio = index / model alone at the same threads)",
        ["backend", "model threads", "decode workers", "prefetch (batches)", "model alone", "Library.index", "ratio",
         "CPU ratio"],
        rows,
    )  # fmt: skip
