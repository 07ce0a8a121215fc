"""Search planner: filters, exact vs HNSW, metrics, k beyond the library, combined queries."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from imagegen import make_catalog, write_image
from searching import search_image

from visualfinder.catalog.filters import Filters
from visualfinder.errors import EmptyLibraryError, QueryError
from visualfinder.library.facade import QueryTerm, SearchRequest, open_library


def test_folder_filter_returns_only_that_folder_and_matches_the_exact_path(library, tmp_path):
    chairs, chairs2 = tmp_path / "chairs", tmp_path / "chairs2"
    make_catalog(chairs, 5)
    make_catalog(chairs2, 5, start_seed=50)
    library.index([chairs, chairs2])
    query = chairs2 / "product_0050.jpg"
    response = library.search(
        SearchRequest([QueryTerm("image", query)], k=10, filters=Filters(folders=[str(chairs)]))
    )
    paths = [r.path for r in response.results]
    assert len(paths) == 5
    assert all(p.startswith(str(chairs) + "/") for p in paths)
    assert response.plan.method == "exact"


def test_folder_filter_includes_subfolders(library, tmp_path):
    root = tmp_path / "catalog"
    make_catalog(root, 2)
    deep = write_image(root / "sofas" / "deep" / "sofa.png", 77)
    library.index([root])
    response = library.search(
        SearchRequest([QueryTerm("image", deep)], k=10, filters=Filters(folders=[str(root / "sofas")]))
    )
    assert [r.path for r in response.results] == [str(deep)]


def test_exact_and_hnsw_agree_on_a_small_set(settings, tmp_path):
    lib = open_library(settings.replace(exact_search_max_candidates=0))
    try:
        files = make_catalog(tmp_path / "catalog", 60)
        lib.index([tmp_path / "catalog"])
        for query in files[:5]:
            approx = lib.search(SearchRequest([QueryTerm("image", query)], k=10))
            exact = lib.search(SearchRequest([QueryTerm("image", query)], k=10, exact=True))
            assert approx.plan.method == "hnsw" and exact.plan.method == "exact"
            assert [r.id for r in approx.results] == [r.id for r in exact.results]
            np.testing.assert_allclose(
                [r.score for r in approx.results], [r.score for r in exact.results], atol=2e-3
            )
    finally:
        lib.close()


def test_filtered_hnsw_over_fetches_until_k_matches(settings, tmp_path):
    lib = open_library(settings.replace(exact_search_max_candidates=1))
    try:
        make_catalog(tmp_path / "big", 40)
        small = make_catalog(tmp_path / "small", 6, start_seed=200)
        lib.index([tmp_path / "big", tmp_path / "small"])
        response = lib.search(
            SearchRequest(
                [QueryTerm("image", small[0])], k=4, filters=Filters(folders=[str(tmp_path / "small")])
            )
        )
        assert response.plan.method == "hnsw"
        assert len(response.results) == 4
        assert response.results[0].path == str(small[0])
        assert all(r.path.startswith(str(tmp_path / "small")) for r in response.results)
    finally:
        lib.close()


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_every_metric_ranks_the_query_first_with_score_one(settings, tmp_path, metric):
    lib = open_library(settings.replace(metric=metric))
    try:
        assert lib.catalog.meta("metric") == metric
        files = make_catalog(tmp_path / "catalog", 10)
        lib.index([tmp_path / "catalog"])
        results = search_image(lib, files[4], k=10)
        assert results[0].path == str(files[4])
        assert results[0].score == pytest.approx(1.0, abs=2e-3)
        assert results[0].distance == pytest.approx(0.0, abs=0.05)
        assert all(a.score >= b.score - 1e-6 for a, b in zip(results, results[1:]))
        assert all(a.distance <= b.distance + 1e-6 for a, b in zip(results, results[1:]))
    finally:
        lib.close()


def test_metrics_agree_on_the_ranking_of_unit_vectors(settings, tmp_path):
    files = make_catalog(tmp_path / "catalog", 15)
    rankings = []
    for i, metric in enumerate(["cosine", "ip", "l2"]):
        lib = open_library(settings.replace(metric=metric, data_dir=tmp_path / f"data-{i}"))
        try:
            lib.index([tmp_path / "catalog"])
            rankings.append([(r.path, r.score) for r in search_image(lib, files[2], k=15, exact=True)])
        finally:
            lib.close()
    cosine = dict(rankings[0])
    for ranking in rankings[1:]:
        assert sorted(p for p, _ in ranking) == sorted(cosine)
        # Same order, except that float16 storage may swap neighbours whose scores tie within 1e-3.
        for position, (path, score) in enumerate(ranking):
            assert score == pytest.approx(cosine[path], abs=2e-3)
            assert cosine[path] == pytest.approx(rankings[0][position][1], abs=2e-3)


def test_k_larger_than_the_library_returns_every_image(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 7)
    library.index([tmp_path / "catalog"])
    results = search_image(library, files[0], k=1000)
    assert sorted(r.path for r in results) == sorted(map(str, files))


def test_text_query_returns_ranked_results(library, tmp_path):
    make_catalog(tmp_path / "catalog", 5)
    library.index([tmp_path / "catalog"])
    response = library.search(SearchRequest([QueryTerm("text", "red leather armchair")], k=3))
    assert len(response.results) == 3
    assert response.results[0].score >= response.results[-1].score


def test_similar_to_an_indexed_image_uses_its_stored_vector(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 6)
    library.index([tmp_path / "catalog"])
    by_path = library.search(SearchRequest([QueryTerm("similar", files[2])], k=6)).results
    by_file = search_image(library, files[2], k=6)
    assert [r.id for r in by_path] == [r.id for r in by_file]


def test_similar_to_an_unindexed_path_is_a_clear_error(library, tmp_path):
    make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    with pytest.raises(QueryError, match="not in the library"):
        library.search(SearchRequest([QueryTerm("similar", tmp_path / "nope.jpg")]))


def test_minus_term_pushes_results_away(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 10)
    library.index([tmp_path / "catalog"])
    plain = search_image(library, files[0], k=10)
    minus = library.search(
        SearchRequest([QueryTerm("image", files[0]), QueryTerm("similar", plain[1].path, weight=-1.0)], k=10)
    ).results
    rank_plain = [r.id for r in plain].index(plain[1].id)
    rank_minus = [r.id for r in minus].index(plain[1].id)
    assert rank_minus > rank_plain


def test_query_that_cancels_out_is_rejected(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    with pytest.raises(QueryError, match="cancel"):
        library.search(
            SearchRequest([QueryTerm("image", files[0]), QueryTerm("image", files[0], weight=-1.0)])
        )


def test_crop_searches_just_the_region(library, tmp_path):
    from imagegen import product_image
    from PIL import Image

    files = make_catalog(tmp_path / "catalog", 5)
    library.index([tmp_path / "catalog"])
    scene = Image.new("RGB", (640, 240), "white")
    scene.paste(product_image(2), (0, 0))
    scene.paste(product_image(300), (320, 0))
    scene_path = tmp_path / "scene.png"
    scene.save(scene_path)
    whole = library.search(SearchRequest([QueryTerm("image", scene_path)], k=1)).results[0]
    by_pixels = library.search(
        SearchRequest([QueryTerm("image", scene_path, crop=(0, 0, 320, 240))], k=1)
    ).results[0]
    by_fraction = library.search(
        SearchRequest([QueryTerm("image", scene_path, crop=(0, 0, 0.5, 1))], k=1)
    ).results[0]
    assert by_pixels.path == by_fraction.path == str(files[2])
    assert by_pixels.score == pytest.approx(1.0, abs=2e-3)
    assert whole.score < by_pixels.score - 1e-3
    with pytest.raises(QueryError, match="crop"):
        library.search(SearchRequest([QueryTerm("image", files[1], crop=(5000, 5000, 10, 10))]))


def test_searching_an_empty_library_says_so(library, tmp_path):
    query = write_image(tmp_path / "q.jpg", 1)
    with pytest.raises(EmptyLibraryError, match="no indexed images"):
        search_image(library, query)


def test_tag_type_and_metadata_filters_narrow_candidates(library, tmp_path):
    root = tmp_path / "catalog"
    jpgs = make_catalog(root, 4)
    pngs = make_catalog(root, 3, start_seed=40, ext="png")
    library.index([root])
    with library.catalog.transaction() as conn:
        for path in (jpgs[0], pngs[0]):
            image_id = library.catalog.id_for_path(str(path))
            conn.execute("INSERT INTO tags(image_id, tag) VALUES (?, 'oak')", (image_id,))
            conn.execute(
                "INSERT INTO image_meta(image_id, sku, title) VALUES (?, ?, 'Oak chair')",
                (image_id, f"SKU-{image_id}"),
            )
    only_png = library.search(
        SearchRequest([QueryTerm("image", jpgs[0])], k=10, filters=Filters(types=["png"]))
    ).results
    assert sorted(r.path for r in only_png) == sorted(map(str, pngs))
    oak = library.search(
        SearchRequest([QueryTerm("image", jpgs[0])], k=10, filters=Filters(tags_all=["OAK"]))
    ).results
    assert sorted(r.path for r in oak) == sorted([str(jpgs[0]), str(pngs[0])])
    assert oak[0].record.title == "Oak chair" and oak[0].record.tags == ["oak"]
    png_id = library.catalog.id_for_path(str(pngs[0]))
    by_sku = library.search(
        SearchRequest(
            [QueryTerm("image", jpgs[0])], k=10, filters=Filters(fields=[_field("sku", f"SKU-{png_id}")])
        )
    ).results
    assert [r.path for r in by_sku] == [str(pngs[0])]


def _field(name, value):
    from visualfinder.catalog.filters import FieldCondition

    return FieldCondition(name, value)


def test_search_answers_while_an_index_run_is_in_progress(library, tmp_path):
    import threading

    files = make_catalog(tmp_path / "first", 4)
    library.index([tmp_path / "first"])
    make_catalog(tmp_path / "second", 30, start_seed=500)
    library.embedder._batch_size = 4
    first_commit, release = threading.Event(), threading.Event()

    def progress(p):
        if p.phase == "indexing" and p.done >= 4:
            first_commit.set()
            release.wait(30)

    worker = threading.Thread(
        target=library.index, args=([tmp_path / "second"],), kwargs={"progress": progress}
    )
    worker.start()
    try:
        assert first_commit.wait(60)
        results = search_image(library, files[0], k=3)  # must not wait for the run to finish
        assert results[0].path == str(files[0])
    finally:
        release.set()
        worker.join(60)
    assert len(library.vector_index) == 34


def test_a_search_on_an_empty_index_waits_for_its_writer_and_sees_another_librarys_images(settings, tmp_path):
    files = make_catalog(tmp_path / "catalog", 4)
    searcher = open_library(settings)  # opened before anything was indexed: its index is empty
    writer = open_library(settings)
    try:
        writer.index([tmp_path / "catalog"])
        busy, release = threading.Event(), threading.Event()

        def edit_tags_waiting_for_the_other_writer():
            with searcher.live.writing_here():  # what a tag edit holds while the other library writes
                busy.set()
                release.wait(10)

        thread = threading.Thread(target=edit_tags_waiting_for_the_other_writer)
        thread.start()
        busy.wait(10)
        threading.Timer(0.3, release.set).start()
        results = search_image(searcher, files[1], k=2)
        thread.join()
        assert results[0].path == str(files[1])
    finally:
        writer.close()
        searcher.close()
