"""Benchmarks for the catalog features (run on demand: `pytest tests/benchmarks -s`).

Synthetic unit vectors go straight into a real catalog and a real USearch index (no model, no
image files), so the numbers measure the planner and the duplicate finder alone. Each prints
ratios against a baseline measured in the same run.
"""

from __future__ import annotations

import time

import numpy as np

from visualfinder.catalog.filters import Filters
from visualfinder.catalog.store import Catalog, CatalogChanges, ImageWrite
from visualfinder.search.duplicates import DuplicateFinder
from visualfinder.search.planner import SearchPlanner
from visualfinder.search.vector_index import IndexSpec, VectorIndex

KEY = "bench/synthetic"
DIM = 256


def _library(tmp_path, vectors: np.ndarray, folders: int = 100):
    """A catalog whose image i lives in folder i % folders, and an HNSW index over the vectors."""
    catalog = Catalog(tmp_path / "catalog.db")
    ids = [catalog.add_folder(f"/bench/f{n:03d}").id for n in range(folders)]
    for start in range(0, len(vectors), 5000):
        writes = [
            ImageWrite(
                f"/bench/f{i % folders:03d}/img_{i:07d}.jpg",
                ids[i % folders],
                1000 + i,
                i,
                content_hash=f"h{i}",
                width=640,
                height=480,
                format="JPEG",
                embedding=vectors[i],
                model_key=KEY,
            )  # fmt: skip
            for i in range(start, min(start + 5000, len(vectors)))
        ]
        catalog.apply(CatalogChanges(inserts=writes))
    index = VectorIndex(IndexSpec(DIM, "cosine", "f16", 16, KEY, catalog.library_id))
    index.rebuild(catalog.iter_embeddings(KEY), len(vectors), catalog.generation)
    return catalog, index


def _unit(rng, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _clustered(rng, n: int, clusters: int = 400, spread: float = 0.6) -> np.ndarray:
    """Unit vectors around `clusters` centres: structured like image embeddings (uniform random
    vectors are the worst case for any graph index and nothing like CLIP's)."""
    centres = _unit(rng, clusters)
    v = centres[rng.integers(0, clusters, n)] + spread * _unit(rng, n)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _timed(func, repeat: int) -> float:
    func()  # warm up
    started = time.perf_counter()
    for _ in range(repeat):
        func()
    return (time.perf_counter() - started) / repeat


def test_filtered_search_planner(tmp_path):
    """Filtered queries by selectivity: the auto plan against the unfiltered HNSW baseline and
    against forced exact search; recall of the HNSW path against exact."""
    rng = np.random.default_rng(0)
    n = 30_000
    vectors = _clustered(rng, n)
    catalog, index = _library(tmp_path, vectors)
    queries = _clustered(rng, 20)
    planner = SearchPlanner(catalog, index, "cosine", KEY, exact_max=2_000)
    baseline = _timed(lambda: [planner.search(q, 20) for q in queries], 3) / len(queries)
    recall = np.mean([
        len({r.id for r in planner.search(q, 20)[0]} & {r.id for r in planner.search(q, 20, exact=True)[0]}) / 20
        for q in queries
    ])  # fmt: skip
    print(f"\n{n} clustered vectors, {DIM}-d; unfiltered HNSW k=20: {baseline * 1000:.2f} ms/query "
          f"(baseline), recall {recall:.3f}")  # fmt: skip
    print(
        f"{'folders':>8} {'matches':>8} {'plan':>6} {'auto ms':>8} {'x base':>7} {'exact ms':>9} {'recall':>7}"
    )
    for count in (1, 5, 10, 30, 100):
        filters = Filters(folders=[f"/bench/f{i:03d}" for i in range(count)])
        plan = planner.search(queries[0], 20, filters)[1]
        auto = _timed(lambda filters=filters: [planner.search(q, 20, filters) for q in queries], 2) / len(
            queries
        )
        exact = _timed(
            lambda filters=filters: [planner.search(q, 20, filters, exact=True) for q in queries], 1
        )
        exact /= len(queries)
        hits = sum(
            len(
                {r.id for r in planner.search(q, 20, filters)[0]}
                & {r.id for r in planner.search(q, 20, filters, True)[0]}
            )
            for q in queries
        )
        print(f"{count:>8} {plan.candidates:>8} {plan.method:>6} {auto * 1000:>8.2f} {auto / baseline:>7.1f} "
              f"{exact * 1000:>9.2f} {hits / (20 * len(queries)):>7.3f}")  # fmt: skip
    catalog.close()


def test_duplicate_finder_scales_with_the_library_not_its_square(tmp_path):
    """Time per image for 2k, 4k, 8k and 16k images with 10 % planted near-copies: index
    neighbour search keeps it flat, where all pairs would double it with every doubling."""
    rng = np.random.default_rng(1)
    times = {}
    for n in (2_000, 4_000, 8_000, 16_000):
        base = _clustered(rng, n, clusters=max(50, n // 40))
        planted = rng.choice(n, n // 10, replace=False)
        base[planted[: len(planted) // 2]] = base[planted[len(planted) // 2 :]] + 0.05 * _unit(
            rng, len(planted) // 2
        )
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        folder = tmp_path / f"n{n}"
        folder.mkdir()
        catalog, index = _library(folder, base)
        finder = DuplicateFinder(catalog, index, KEY, threshold=0.95, candidate_similarity=0.9)
        started = time.perf_counter()
        report = finder.run()
        times[n] = time.perf_counter() - started
        similar = len(report.tier("similar"))
        print(
            f"\n{n:>6} images: {times[n]:.2f} s, {times[n] / n * 1e6:.0f} us/image, {similar} 'similar' groups"
        )
        catalog.close()
    first = min(times)
    for n, seconds in times.items():
        print(f"{n:>6}: {seconds / times[first]:.1f}x the time of {first} for {n / first:.0f}x the images")
