"""Query latency: a 12 MP JPEG (and a text) -> results, ViT-B-32-256 on CPU, first model load excluded.

Target: < 300 ms for the image query. Each backend answers the same queries against the same
library (20k indexed vectors); the table splits the time into decode, preprocess, model and
search. Baseline in the same run: the same query decoded without draft (a full 12 MP decode).

    pytest tests/benchmarks/test_query_latency.py -s

Environment: VF_BENCH_BACKENDS (torch,onnx), VF_BENCH_QUERIES (10), VF_BENCH_MODEL, VF_BENCH_KEEP=DIR.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report import env_int, env_list, machine, ms, table
from synthetic import camera_jpeg, centres_for, mixture

from visualfinder.catalog.store import CatalogChanges, ImageWrite
from visualfinder.config import Settings
from visualfinder.library.facade import QueryTerm, SearchRequest, open_library

BACKENDS = env_list("VF_BENCH_BACKENDS", "torch,onnx")
QUERIES = env_int("VF_BENCH_QUERIES", 10)
MODEL = os.environ.get("VF_BENCH_MODEL", "ViT-B-32-256")
INDEXED = 20_000


def _fill(library, n: int) -> None:
    """n embedded rows (embedding-like vectors), written as the pipeline writes them."""
    folder = library.catalog.add_folder("/bench-query")
    vectors = next(mixture(n, library.embedder.dim, seed=4, centres=centres_for(n), chunk=n))
    changes = CatalogChanges()
    for i, vector in enumerate(vectors):
        changes.inserts.append(ImageWrite(f"/bench-query/img_{i:06d}.jpg", folder.id, 1, i, content_hash=f"{i:x}",
                                          embedding=vector, model_key=library.model_key))  # fmt: skip
    library.catalog.apply(changes)
    library.live.sync()


@pytest.mark.timeout(3 * 3600)
def test_query_latency_of_a_12_megapixel_photo(tmp_path_factory):
    root = Path(os.environ.get("VF_BENCH_KEEP") or tmp_path_factory.mktemp("query"))
    queries = [
        p if (p := root / "queries" / f"q{i}.jpg").exists() else camera_jpeg(p, 7000 + i)
        for i in range(QUERIES)
    ]
    print(f"\nquery latency: {machine()}", flush=True)
    rows = []
    for backend in BACKENDS:
        data_dir = root / f"lib-{backend}"
        library = open_library(
            Settings.load(data_dir, model=MODEL, pretrained="none", device="cpu", backend=backend)
        )
        try:
            if len(library.vector_index) == 0:
                _fill(library, INDEXED)
            started = time.perf_counter()
            library.embedder.load()
            library.embedder.embed_texts(["warm-up"])
            load_s = time.perf_counter() - started
            library.search(SearchRequest([QueryTerm("image", queries[0])], k=10))  # first-call allocations
            total, decode, prep, model, search, text, full_decode = ([] for _ in range(7))
            for path in queries:
                start = time.perf_counter()
                response = library.search(SearchRequest([QueryTerm("image", path)], k=10))
                total.append(time.perf_counter() - start)
                assert len(response.results) == 10
                # The same steps one by one, to show where the time goes.
                t0 = time.perf_counter()
                decoded = library.decode_query_image(path)
                t1 = time.perf_counter()
                tensor = library.embedder.preprocess(decoded.image)
                t2 = time.perf_counter()
                vector = library.embedder.embed_batch([tensor])[0]
                t3 = time.perf_counter()
                library.live.engine.planner.search(vector, 10)
                t4 = time.perf_counter()
                decode.append(t1 - t0), prep.append(t2 - t1), model.append(t3 - t2), search.append(t4 - t3)
                start = time.perf_counter()
                with Image.open(path) as img:
                    img.convert("RGB")
                full_decode.append(time.perf_counter() - start)
                start = time.perf_counter()
                library.search(SearchRequest([QueryTerm("text", "a red leather armchair")], k=10))
                text.append(time.perf_counter() - start)
            total = np.array(total)
            rows.append([backend, f"{load_s:.1f}", f"{ms(total):.0f}", f"{ms(total, 90):.0f}",
                         f"{ms(np.array(decode)):.0f}", f"{ms(np.array(full_decode)):.0f}", f"{ms(np.array(prep)):.1f}",
                         f"{ms(np.array(model)):.0f}", f"{ms(np.array(search)):.1f}", f"{ms(np.array(text)):.0f}",
                         "yes" if ms(total) < 300 else "NO"])  # fmt: skip
            print("  ", rows[-1], flush=True)
        finally:
            library.close()
    table(
        f"Query latency, {MODEL} on CPU, {QUERIES} queries of 4000x3000 JPEGs, {INDEXED:,} indexed (ms, p50)",
        ["backend", "model load s (excluded)", "image query p50", "p90", "draft decode", "full decode (baseline)",
         "preprocess", "model", "search", "text query p50", "< 300 ms"],
        rows,
    )  # fmt: skip
