"""The vector index at scale: i8 storage re-scored from the catalog, memory-mapped opening,
SIMD exact search over candidates, and catalog lookups that stay off the model index."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from imagegen import make_catalog
from searching import search_image

from visualfinder.catalog.filters import Filters
from visualfinder.library.facade import QueryTerm, SearchRequest, open_library
from visualfinder.search.vector_index import IndexSpec, VectorIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _index(dtype: str, metric: str = "cosine", dim: int = 32) -> VectorIndex:
    return VectorIndex(IndexSpec(dim, metric, dtype, 16, "test/model", "lib"))


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_search_over_candidates_matches_numpy(dtype, metric):
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 500, 32)
    index = _index(dtype, metric)
    ids = np.arange(1, 501, dtype=np.uint64)
    index.add(ids, vectors)
    candidates = ids[::3]
    query = _unit(rng, 1, 32)[0]
    stored = vectors.astype(np.float16).astype(np.float32) if dtype == "f16" else vectors
    rows = stored[(candidates - 1).astype(int)]
    if metric == "l2":
        expected = ((rows - query) ** 2).sum(axis=1)
    else:
        expected = 1.0 - rows @ query
    order = np.argsort(expected)[:10]
    found, dist = index.exact_search(query, np.append(candidates, [99_999]), 10)  # unknown ids are skipped
    assert found.tolist() == candidates[order].tolist()
    np.testing.assert_allclose(dist, expected[order], atol=2e-3)


def test_i8_vectors_come_back_dequantized():
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 50, 32)
    index = _index("i8")
    index.add(np.arange(50), vectors)
    found, got = index.vectors(np.array([4, 9, 1000]))
    assert found.tolist() == [4, 9]
    # i8 keeps about two significant digits of each component of a unit vector.
    np.testing.assert_allclose(got, vectors[[4, 9]], atol=1 / 127 + 1e-6)


def test_i8_library_gives_the_same_results_and_scores_as_f16(settings, tmp_path):
    make_catalog(tmp_path / "catalog", 30)
    make_catalog(tmp_path / "catalog" / "sub", 10, start_seed=100)
    queries = [tmp_path / "catalog" / "product_0003.jpg", tmp_path / "catalog" / "sub" / "product_0105.jpg"]
    answers = {}
    for dtype in ("f16", "i8"):
        # exact_search_max_candidates=0: every query goes through HNSW (and re-scoring for i8).
        lib = open_library(
            settings.replace(data_dir=tmp_path / dtype, index_dtype=dtype, exact_search_max_candidates=0)
        )
        try:
            lib.index([tmp_path / "catalog"])
            assert lib.vector_index.quantized == (dtype == "i8")
            runs = []
            for query in queries:
                for filters in (Filters(), Filters(folders=[str(tmp_path / "catalog" / "sub")])):
                    for exact in (False, True):
                        response = lib.search(
                            SearchRequest([QueryTerm("image", query)], k=5, filters=filters, exact=exact)
                        )
                        runs.append([(r.path, round(r.score, 4)) for r in response.results])
            answers[dtype] = runs
        finally:
            lib.close()
    assert len(answers["i8"]) == len(answers["f16"])
    for f16_run, i8_run in zip(answers["f16"], answers["i8"]):
        # The same scores, place by place (i8 candidates are re-scored from the catalog's float16
        # vectors); vf-tiny's near-ties may swap two images, or one at the k-th place.
        assert [s for _, s in i8_run] == pytest.approx([s for _, s in f16_run], abs=1e-3)
        f16_scores = dict(f16_run)
        for path, score in i8_run:
            assert score == pytest.approx(f16_scores.get(path, f16_run[-1][1]), abs=1e-3)
    assert answers["f16"][0][0][1] == pytest.approx(1.0, abs=1e-3)


def test_saved_index_opens_memory_mapped_and_becomes_writable_on_the_first_change(library, reopen, tmp_path):
    files = make_catalog(tmp_path / "catalog", 8)
    library.index([tmp_path / "catalog"])
    library.close()
    lib = reopen()
    assert lib.vector_index.is_view and len(lib.vector_index) == 8
    assert search_image(lib, files[2], k=1)[0].path == str(files[2])
    new = make_catalog(tmp_path / "catalog", 2, start_seed=40)
    lib.index()
    assert not lib.vector_index.is_view and len(lib.vector_index) == 10
    assert search_image(lib, new[1], k=1)[0].path == str(new[1])
    lib.close()
    again = reopen()
    assert again.vector_index.is_view and len(again.vector_index) == 10


def test_index_loads_into_memory_when_memory_mapping_is_off(library, reopen, tmp_path):
    make_catalog(tmp_path / "catalog", 4)
    library.index([tmp_path / "catalog"])
    library.close()
    lib = reopen(index_memory_map=False)
    assert lib.index_health == "ok" and not lib.vector_index.is_view and len(lib.vector_index) == 4


def test_a_deep_filtered_search_does_not_widen_later_searches(settings, tmp_path):
    lib = open_library(settings.replace(exact_search_max_candidates=1, hnsw_expansion_search=40))
    try:
        make_catalog(tmp_path / "big", 30)
        small = make_catalog(tmp_path / "small", 3, start_seed=300)
        lib.index([tmp_path / "big", tmp_path / "small"])
        response = lib.search(
            SearchRequest(
                [QueryTerm("image", small[0])], k=3, filters=Filters(folders=[str(tmp_path / "small")])
            )
        )
        assert response.plan.method == "hnsw" and len(response.results) == 3
        assert lib.vector_index.expansion_search == 40
    finally:
        lib.close()


def test_lookups_by_id_path_or_hash_never_walk_every_vector_of_the_model(library, tmp_path):
    """SQLite guesses `model_key = ?` is selective, but every vector of a library has the same
    key: led by that index, a lookup of one content hash visited all of them (at 1M vectors,
    for every new file indexed)."""
    files = make_catalog(tmp_path / "catalog", 5)
    library.index([tmp_path / "catalog"])
    catalog = library.catalog
    statements: list[str] = []
    catalog.conn.set_trace_callback(statements.append)
    try:
        ids = catalog.embedded_ids(library.model_key)
        list(catalog.iter_embeddings(library.model_key, ids=ids.tolist()))
        catalog.embedding_of(int(ids[0]), library.model_key)
        catalog.embedded_source(catalog.records([int(ids[0])])[int(ids[0])].content_hash, library.model_key)
        library.search(
            SearchRequest(
                [QueryTerm("image", files[0])], k=2, filters=Filters(folders=[str(tmp_path / "catalog")])
            )
        )
    finally:
        catalog.conn.set_trace_callback(None)
    checked = 0
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT") and (
            "IN (" in sql or "path >=" in sql or "content_hash =" in sql
        ):
            plan = [str(row[3]) for row in catalog.conn.execute("EXPLAIN QUERY PLAN " + sql)]
            # The model's indexes may serve a lookup only together with an image id.
            assert not any("embeddings_model" in step and "image_id=?" not in step for step in plan), (
                sql,
                plan,
            )
            assert not any(step.startswith("SCAN") and "subquery" not in step for step in plan), (sql, plan)
            checked += 1
    assert checked >= 4


def test_onnxruntime_imports_after_the_vector_index():
    """usearch's static libstdc++ used to crash a later `import onnxruntime` (segfault)."""
    pytest.importorskip("onnxruntime")
    code = "import visualfinder.search.vector_index, onnxruntime; print(onnxruntime.get_device())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
