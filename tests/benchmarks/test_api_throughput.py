"""HTTP API throughput and latency: `visualfinder serve` against a seed-style baseline, same run.

The baseline (api_baseline.py) is how the seed system answered: open_clip torch per request in
FastAPI's thread pool, numpy brute force over all vectors. Ours: the same model architecture,
the library's warm embedder behind the model gate, the planner over the HNSW index. Both hold
the same 100k synthetic embedding-like vectors (synthetic.py); text queries and 800x800 JPEG
uploads, warm, at concurrency 1, 4 and 16.

    pytest tests/benchmarks/test_api_throughput.py -s

Environment: VF_BENCH_N (100000), VF_BENCH_MODEL (ViT-B-32-256, random weights: the same
compute as the trained ones), VF_BENCH_BACKEND (ours only: onnx, the lean CPU path that
`backend = auto` is for; torch to compare; the baseline is always open_clip torch),
VF_BENCH_PRECISIONS (ours: "fp32,int8", each a library of its own: model_precision),
VF_BENCH_REQUESTS (per concurrency: 24). Every text query is distinct (no cache can answer it).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from imagegen import product_image
from report import env_int, machine, table
from synthetic import build_catalog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import ApiServer, multipart  # noqa: E402

from visualfinder.config import Settings  # noqa: E402
from visualfinder.library.facade import open_library  # noqa: E402
from visualfinder.models.embedder import model_key  # noqa: E402

N = env_int("VF_BENCH_N", 100_000)
MODEL = os.environ.get("VF_BENCH_MODEL", "ViT-B-32-256")
BACKEND = os.environ.get("VF_BENCH_BACKEND", "onnx")
REQUESTS = env_int("VF_BENCH_REQUESTS", 24)
PRECISIONS = [p for p in os.environ.get("VF_BENCH_PRECISIONS", "fp32,int8").split(",") if p]
CONCURRENCY = (1, 4, 16)
HERE = Path(__file__).resolve().parent


def _upload_jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    picture = product_image(seed, (200, 200)).resize((800, 800))
    noise = np.random.default_rng(seed).integers(-10, 11, (800, 800, 3))
    from PIL import Image

    Image.fromarray(np.clip(np.asarray(picture, dtype=np.int16) + noise, 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=90
    )
    return buf.getvalue()


class _Baseline:
    def __init__(self, vectors_path: Path):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "api_baseline.py"), str(vectors_path), MODEL],
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        line = self.proc.stdout.readline()
        assert "serving" in line, line
        self.base = line.split("serving ", 1)[1].split("/api/v1")[0]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def _post(url: str, body: bytes, content_type: str) -> float:
    import urllib.request

    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - started


def _load(url: str, bodies: list[tuple[bytes, str]], concurrency: int) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, requests/s) for `bodies` sent by `concurrency` clients."""
    for body, kind in bodies[:2]:  # warm
        _post(url, body, kind)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(lambda b: _post(url, *b), bodies))
    wall = time.perf_counter() - started
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 95) * 1000), len(bodies) / wall


@pytest.mark.timeout(3600)
def test_api_throughput_against_a_seed_style_baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-bench")
    print(
        f"\nAPI throughput: {machine()}; {N} vectors, {MODEL} ({BACKEND}), {REQUESTS} requests per cell",
        flush=True,
    )
    started = time.perf_counter()
    data_dirs = {}
    for precision in PRECISIONS:
        data_dir = data_dirs[precision] = root / f"vf-data-{precision}"
        data_dir.mkdir()
        stored = build_catalog(data_dir / "catalog.db", N, model_key(MODEL, "none", precision), dim=512)
        # The HNSW index is built once here, as `visualfinder index` leaves it: serve then loads it.
        settings = Settings.load(data_dir, model=MODEL, pretrained="none", device="cpu", backend=BACKEND,
                                 model_precision=precision)  # fmt: skip
        open_library(settings).close()
    np.save(root / "vectors.npy", stored)
    print(f"libraries and their indexes written in {time.perf_counter() - started:.0f} s", flush=True)

    uploads = [_upload_jpeg(s) for s in range(8)]
    texts = [f"a red armchair number {i}" for i in range(REQUESTS)]

    def text_bodies(ours: bool) -> list[tuple[bytes, str]]:
        return [multipart([], {"text": t, "k": 10}) for t in texts]

    def upload_bodies() -> list[tuple[bytes, str]]:
        return [
            multipart([("image", "q.jpg", uploads[i % len(uploads)])], {"k": 10}) for i in range(REQUESTS)
        ]

    results: dict[tuple[str, str, int], tuple[float, float, float]] = {}
    for precision in PRECISIONS:
        env = {"VISUALFINDER_MODEL": MODEL, "VISUALFINDER_PRETRAINED": "none", "VISUALFINDER_BACKEND": BACKEND,
               "VISUALFINDER_MODEL_PRECISION": precision}  # fmt: skip
        started = time.perf_counter()
        ours = ApiServer(data_dirs[precision], env=env, start_timeout=1800)
        print(f"serve ({precision}) ready in {time.perf_counter() - started:.0f} s", flush=True)
        try:
            for c in CONCURRENCY:
                results[(precision, "text", c)] = _load(ours.base + "/api/v1/search", text_bodies(True), c)
                results[(precision, "upload", c)] = _load(ours.base + "/api/v1/search", upload_bodies(), c)
        finally:
            ours.stop()
    baseline = _Baseline(root / "vectors.npy")
    try:
        for c in CONCURRENCY:
            results[("baseline", "text", c)] = _load(baseline.base + "/search", text_bodies(False), c)
            results[("baseline", "upload", c)] = _load(baseline.base + "/search", upload_bodies(), c)
    finally:
        baseline.stop()

    rows = []
    for query in ("text", "upload"):
        for c in CONCURRENCY:
            b50, b95, brps = results[("baseline", query, c)]
            for precision in PRECISIONS:
                o50, o95, orps = results[(precision, query, c)]
                rows.append([query, c, f"{b50:.0f}", f"{b95:.0f}", f"{brps:.1f}", precision, f"{o50:.0f}",
                             f"{o95:.0f}", f"{orps:.1f}", f"{orps / brps:.2f}x"])  # fmt: skip
    table(f"HTTP API, {N} vectors, {MODEL} ({BACKEND}), warm",
          ["query", "clients", "baseline p50 ms", "p95 ms", "req/s", "ours", "p50 ms", "p95 ms", "req/s",
           "throughput"], rows)  # fmt: skip
    assert all(v[2] > 0 for v in results.values())
