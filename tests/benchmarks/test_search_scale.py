"""Search at scale: 1M embedding-like vectors in a real catalog, HNSW vs exact vs numpy brute force.

Measures, in one run: rebuild of the index from the catalog (with progress), file size, start-up
(load vs memory-mapped view, in a fresh process: time and RSS), unfiltered HNSW p50/p99 and
recall@10 against exact search for a sweep of `expansion_search`, filtered search (a folder
holding 1 % and 10 %) through the exact and the HNSW path, and numpy float32 brute force (what
rclip does) as the baseline.

    pytest tests/benchmarks/test_search_scale.py -s                    # 1M vectors: ~1 h here
    VF_BENCH_VECTORS=100000 pytest tests/benchmarks/test_search_scale.py -s   # minutes

Environment: VF_BENCH_VECTORS (1000000), VF_BENCH_QUERIES (1000), VF_BENCH_DTYPES (f16,i8),
VF_BENCH_EF (16,24,32,48,64,96,128), VF_BENCH_KEEP=DIR keeps the catalog and indexes there and
reuses them on the next run (the build is then not re-measured).
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
import pytest
from report import env_int, env_list, machine, ms, table, timed
from synthetic import CATALOG_ROOT, SUB_FOLDERS, Timer, build_catalog, centres_for, exact_top_k, mixture

from visualfinder.catalog.filters import Filters
from visualfinder.config import Settings
from visualfinder.library.facade import open_library
from visualfinder.models.embedder import model_key
from visualfinder.search import planner as search_module

N = env_int("VF_BENCH_VECTORS", 1_000_000)
QUERIES = env_int("VF_BENCH_QUERIES", 1000)
DTYPES = env_list("VF_BENCH_DTYPES", "f16,i8")
EFS = [int(v) for v in env_list("VF_BENCH_EF", "16,24,32,48,64,96,128")]
MODEL = "ViT-B-32-256"
K = 10
HERE = Path(__file__).parent


def _recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K].tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def _settings(data_dir: Path, dtype: str, view: bool = False) -> Settings:
    return Settings.load(data_dir, model=MODEL, pretrained="none", device="cpu", index_dtype=dtype,
                         index_memory_map=view)  # fmt: skip


def _planner_runs(library, queries, filters=None, exact=False, same_filter_again=False):
    """(latencies, result ids) of the planner answering each query (model excluded); each query
    lists its filter's candidates afresh unless `same_filter_again` (the planner keeps the last)."""
    times, found = [], []
    for q in queries:
        if not same_filter_again:
            library.live.engine.planner._candidates = None
        t, (results, plan) = timed(lambda q=q: library.live.engine.planner.search(q, K, filters, exact), 1)
        times.append(t[0])
        found.append(np.array([r.id for r in results], dtype=np.int64))
    return np.array(times), found, plan


def _startup(data_dir: Path, dtype: str, view: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent.parent), str(HERE)]))
    out = subprocess.run(
        [sys.executable, str(HERE / "startup_probe.py"), str(data_dir), dtype, "1" if view else "0", "201", str(N)],
        capture_output=True, text=True, env=env, check=True, timeout=1800,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli_first_search(data_dir: Path, dtype: str, similar: str) -> tuple[float, float]:
    """Seconds from `python -m visualfinder ... search --similar` start to its results, and the
    seconds of a bare `import visualfinder.cli.main` (the floor), each the best of 3."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    (data_dir / "settings.toml").write_text(
        f'index_dtype = "{dtype}"\n', encoding="utf-8"
    )  # as a user sets it
    args = [sys.executable, "-m", "visualfinder", "--data-dir", str(data_dir), "--model", MODEL, "--pretrained",
            "none", "--device", "cpu", "search", "--similar", similar, "-k", "10",
            "--json"]  # fmt: skip
    search, floor = [], []
    for _ in range(3):
        start = time.perf_counter()
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
        search.append(time.perf_counter() - start)
        assert out.returncode == 0 and len(json.loads(out.stdout)) == 10, out.stderr[-2000:]
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import visualfinder.cli.main"], env=env, check=True, timeout=600
        )
        floor.append(time.perf_counter() - start)
    return min(search), min(floor)


def _numpy_brute_force(stored: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Latencies of float32 brute force over every vector, as rclip searches (matrix @ query)."""
    matrix = np.asarray(stored, dtype=np.float32)
    times = []
    for q in queries:
        t, _ = timed(lambda q=q: np.argpartition(-(matrix @ q), K)[:K], 1)
        times.append(t[0])
    return np.array(times)


def _progress(label):
    last = [-1]

    def report(p):
        if p.total and (pct := 100 * p.done // p.total) // 10 != last[0]:
            last[0] = pct // 10
            print(f"  {label}: {p.phase} {p.done:,}/{p.total:,}", flush=True)

    return report


@pytest.mark.timeout(6 * 3600)
def test_search_at_scale(tmp_path_factory):
    root = Path(os.environ.get("VF_BENCH_KEEP") or tmp_path_factory.mktemp("search-scale"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"\nsearch at scale: {N:,} vectors x 512, {QUERIES} queries; {machine()}", flush=True)
    key = model_key(MODEL, "none")
    catalog = root / f"catalog-{N}.db"
    stored_file = root / f"vectors-{N}.npy"
    place_file = root / f"place-{N}.npy"
    if not (catalog.exists() and stored_file.exists()):
        catalog.unlink(missing_ok=True)
        with Timer() as t:
            stored = build_catalog(catalog, N, key, progress=lambda d, n: None)
        np.save(stored_file, stored)
        print(f"catalog of {N:,} rows written in {t.seconds:.1f}s ({catalog.stat().st_size / 1e6:.0f} MB)")
    stored = np.load(stored_file, mmap_mode="r")
    place = np.random.default_rng(1 + 1000).integers(0, 100, N)  # as build_catalog placed them
    np.save(place_file, place)
    queries = next(mixture(QUERIES, seed=2, centres=centres_for(N), chunk=max(QUERIES, 1)))
    with Timer() as t:
        truth = exact_top_k(stored, queries, K) + 1  # catalog ids are row + 1
    print(f"ground truth (exact top-{K} over the stored float16 vectors) in {t.seconds:.1f}s", flush=True)
    filters = {
        "1 %": (Filters(folders=[f"{CATALOG_ROOT}/d3/s7"]), place == 3 * SUB_FOLDERS + 7),
        "10 %": (Filters(folders=[f"{CATALOG_ROOT}/d3"]), place // SUB_FOLDERS == 3),
    }
    filtered_truth = {}
    for name, (_, mask) in filters.items():
        rows = np.flatnonzero(mask)
        filtered_truth[name] = rows[exact_top_k(stored[rows], queries[:200], K)] + 1

    brute_p50 = ms(_numpy_brute_force(stored, queries[:50]))
    build_rows, sweep_rows, filter_rows, start_rows, cli_rows = [], [], [], [], []
    for dtype in DTYPES:
        data_dir = root / f"lib-{N}-{dtype}"
        if not (data_dir / "catalog.db").exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(catalog, data_dir / "catalog.db")
        with Timer() as t:
            library = open_library(_settings(data_dir, dtype), progress=_progress(dtype))
        index_file = data_dir / "index.usearch"
        built = library.index_health == "rebuilt"
        build_rows.append([dtype, f"{t.seconds:.0f} s" if built else "(kept)", f"{N / t.seconds:,.0f}/s" if built else "",
                           f"{index_file.stat().st_size / 1e9:.3f} GB", f"{library.vector_index.memory_usage / 1e9:.3f} GB"])  # fmt: skip
        print(f"{dtype}: index {'built' if built else 'loaded'} in {t.seconds:.1f}s", flush=True)
        try:
            factors = (1, 2, 4) if library.vector_index.quantized else (None,)
            for ef in EFS:
                library.vector_index.set_expansion_search(ef)
                for factor in factors:
                    if factor is not None:
                        search_module.RESCORE_FACTOR, search_module.RESCORE_EXTRA = (
                            factor,
                            0 if factor == 1 else 10,
                        )
                    times, found, plan = _planner_runs(library, queries)
                    assert plan.method == "hnsw"
                    sweep_rows.append([dtype, ef, factor or "-", f"{_recall(found, truth):.4f}", f"{ms(times):.2f}",
                                       f"{ms(times, 99):.2f}", f"{brute_p50 / ms(times):.0f}x"])  # fmt: skip
                    print("  ", sweep_rows[-1], flush=True)
            search_module.RESCORE_FACTOR, search_module.RESCORE_EXTRA = 4, 30
            library.vector_index.set_expansion_search(library.settings.hnsw_expansion_search)
            times, found, _ = _planner_runs(library, queries[:20], exact=True)
            filter_rows.append([dtype, "none (exact scan)", N, "exact", f"{_recall(found, truth[:20]):.4f}",
                                f"{ms(times):.1f}", f"{ms(times, 99):.1f}"])  # fmt: skip
            for name, (flt, mask) in filters.items():
                # exact_max 1000 forces the HNSW path the way a large filter takes it (the count stops
                # at 1001); 0 would make the planner count every match to check k is reachable.
                for method, exact_max in (("exact", 10**9), ("hnsw", 1000)):
                    library.live.engine.planner.exact_max = exact_max
                    times, found, plan = _planner_runs(library, queries[:200], flt)
                    assert plan.method == method
                    filter_rows.append([dtype, f"folder, {name}", int(mask.sum()), method,
                                        f"{_recall(found, filtered_truth[name]):.4f}", f"{ms(times):.1f}",
                                        f"{ms(times, 99):.1f}"])  # fmt: skip
                    print("  ", filter_rows[-1], flush=True)
                    if method == "exact" and mask.sum() <= library.settings.exact_search_max_candidates:
                        times, found, plan = _planner_runs(
                            library, queries[:200], flt, same_filter_again=True
                        )
                        filter_rows.append([dtype, f"folder, {name}", int(mask.sum()), "exact, same filter again",
                                            f"{_recall(found, filtered_truth[name]):.4f}", f"{ms(times):.1f}",
                                            f"{ms(times, 99):.1f}"])  # fmt: skip
                        print("  ", filter_rows[-1], flush=True)
            library.live.engine.planner.exact_max = library.settings.exact_search_max_candidates
        finally:
            library.close()
        for view in (False, True):
            probe = _startup(data_dir, dtype, view)
            assert probe["health"] == "ok"
            start_rows.append([dtype, "view (mmap)" if view else "load", f"{probe['open_s']:.2f}",
                               f"{probe['first_query_ms']:.1f}", f"{probe['p50_ms']:.2f}",
                               f"{(probe['rss_open']['VmRSS'] - probe['rss_before']['VmRSS']) / 1e9:.3f}",
                               f"{(probe['rss_after']['VmRSS'] - probe['rss_before']['VmRSS']) / 1e9:.3f}",
                               f"{(probe['rss_after'].get('RssAnon', 0) - probe['rss_before'].get('RssAnon', 0)) / 1e9:.3f}"])  # fmt: skip
            print("  ", start_rows[-1], flush=True)
        first = f"{CATALOG_ROOT}/d{place[0] // SUB_FOLDERS}/s{place[0] % SUB_FOLDERS}/img_0000000.jpg"
        cli_rows.append([dtype, *(f"{v:.2f}" for v in _cli_first_search(data_dir, dtype, first))])
        print("  ", cli_rows[-1], flush=True)
    print(f"\nnumpy float32 brute force (rclip): p50 {brute_p50:.1f} ms, {N * 512 * 4 / 1e9:.2f} GB of RAM")
    table(f"Index build from the catalog ({N:,} x 512)", ["dtype", "rebuild + save", "rate", "file", "usearch memory"], build_rows)  # fmt: skip
    table(f"Unfiltered k={K}, {QUERIES} queries (planner incl. result records; numpy f32 p50 {brute_p50:.1f} ms)",
          ["dtype", "expansion_search", "re-score factor", "recall@10", "p50 ms", "p99 ms", "vs numpy"], sweep_rows)  # fmt: skip
    table("CLI: process start to first results (search --similar, best of 3)",
          ["dtype", "search --similar s", "bare import s"], cli_rows)  # fmt: skip
    table("Filtered and exact search (200 queries)", ["dtype", "filter", "candidates", "path", "recall@10", "p50 ms", "p99 ms"], filter_rows)  # fmt: skip
    table("Start-up in a fresh process (open_library + 200 searches)",
          ["dtype", "open", "open s", "first query ms", "p50 ms", "RSS after open GB", "RSS after queries GB", "anon RSS GB"],
          start_rows)  # fmt: skip
    assert all(float(r[3]) > 0.5 for r in sweep_rows)  # a broken index, not a slow one
