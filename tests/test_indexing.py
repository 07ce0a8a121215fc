"""Indexing through Library: the one pipeline, stat-only rescans, moves, copies, changes, removals."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from imagegen import make_catalog, write_image
from searching import search_image

import visualfinder.ingest.pipeline as pipeline_module
from visualfinder.jobs import CancelToken


def test_index_then_search_finds_the_query_image_itself_first(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 12)
    report = library.index([tmp_path / "catalog"])
    assert report.added == 12 and not report.errors
    for query in (files[0], files[7]):
        results = search_image(library, query, k=5)
        assert results[0].path == str(query)
        assert results[0].score == pytest.approx(1.0, abs=1e-3)
        assert results[0].rank == 1
        assert [r.rank for r in results] == [1, 2, 3, 4, 5]
        assert all(results[i].score >= results[i + 1].score for i in range(len(results) - 1))


def test_reindex_of_unchanged_folder_decodes_nothing(library, tmp_path, monkeypatch):
    make_catalog(tmp_path / "catalog", 8)
    library.index([tmp_path / "catalog"])
    calls = []
    original = pipeline_module.decode_image
    monkeypatch.setattr(pipeline_module, "decode_image", lambda *a, **k: calls.append(a) or original(*a, **k))
    reads = []
    original_read = pipeline_module.read_image_file
    monkeypatch.setattr(pipeline_module, "read_image_file", lambda p: reads.append(p) or original_read(p))
    report = library.index()
    assert report.unchanged == 8 and report.added == 0 and report.updated == 0
    assert calls == [] and reads == []


def test_renamed_file_keeps_its_id_and_embedding(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 5)
    library.index([tmp_path / "catalog"])
    old_id = library.catalog.id_for_path(str(files[2]))
    old_vector = library.catalog.embedding_of(old_id, library.model_key)
    renamed = files[2].with_name("renamed-product.jpg")
    os.rename(files[2], renamed)
    report = library.index()
    assert report.moved == 1 and report.added == 0 and report.removed == 0
    assert library.catalog.id_for_path(str(files[2])) is None
    assert library.catalog.id_for_path(str(renamed)) == old_id
    np.testing.assert_array_equal(library.catalog.embedding_of(old_id, library.model_key), old_vector)
    assert search_image(library, renamed, k=1)[0].id == old_id


def test_file_moved_to_another_catalog_folder_keeps_its_id(library, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    files = make_catalog(a, 3)
    make_catalog(b, 2, start_seed=100)
    library.index([a, b])
    old_id = library.catalog.id_for_path(str(files[0]))
    target = b / "moved.jpg"
    shutil.move(files[0], target)
    report = library.index()
    assert report.moved == 1
    assert library.catalog.id_for_path(str(target)) == old_id
    record = library.catalog.records([old_id])[old_id]
    assert record.folder_id == library.catalog.folder_by_path(str(b)).id


def test_copied_file_reuses_the_embedding_without_running_the_model(library, tmp_path, monkeypatch):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"])
    shutil.copy(files[1], tmp_path / "catalog" / "copy.jpg")
    monkeypatch.setattr(library.embedder, "embed_batch", lambda *a: pytest.fail("the model ran for a copy"))
    report = library.index()
    assert report.added == 1 and report.reused == 1
    new_id = library.catalog.id_for_path(str(tmp_path / "catalog" / "copy.jpg"))
    source_id = library.catalog.id_for_path(str(files[1]))
    assert new_id != source_id
    np.testing.assert_array_equal(
        library.catalog.embedding_of(new_id, library.model_key),
        library.catalog.embedding_of(source_id, library.model_key),
    )


def test_deleted_file_leaves_the_results(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 6)
    library.index([tmp_path / "catalog"])
    query_copy = tmp_path / "query.jpg"
    shutil.copy(files[3], query_copy)
    files[3].unlink()
    report = library.index()
    assert report.removed == 1
    paths = [r.path for r in search_image(library, query_copy, k=10)]
    assert str(files[3]) not in paths and len(paths) == 5
    assert len(library.vector_index) == 5


def test_changed_file_is_re_embedded_under_the_same_id(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 4)
    library.index([tmp_path / "catalog"])
    image_id = library.catalog.id_for_path(str(files[0]))
    before = library.catalog.embedding_of(image_id, library.model_key)
    write_image(files[0], seed=999)
    os.utime(files[0], ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    report = library.index()
    assert report.updated == 1
    assert library.catalog.id_for_path(str(files[0])) == image_id
    after = library.catalog.embedding_of(image_id, library.model_key)
    assert not np.allclose(before, after)
    assert search_image(library, files[0], k=1)[0].id == image_id


def test_touched_but_identical_file_is_not_re_embedded(library, tmp_path, monkeypatch):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"])
    os.utime(files[0], ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    monkeypatch.setattr(
        pipeline_module, "decode_image", lambda *a, **k: pytest.fail("decoded an identical file")
    )
    report = library.index()
    assert report.unchanged == 3 and report.updated == 0
    assert library.catalog.stat_row(str(files[0])).mtime_ns == 1_600_000_000_000_000_000


def test_progress_reports_every_image_and_ends_complete(library, tmp_path):
    make_catalog(tmp_path / "catalog", 20)
    seen = []
    library.index([tmp_path / "catalog"], progress=seen.append)
    indexing = [p for p in seen if p.phase == "indexing"]
    assert indexing[0].done == 0 and indexing[-1].done == indexing[-1].total == 20
    assert all(a.done <= b.done for a, b in zip(indexing, indexing[1:]))


def test_cancelled_run_keeps_committed_batches_and_the_next_run_finishes(library, tmp_path):
    make_catalog(tmp_path / "catalog", 40)
    cancel = CancelToken()
    library.embedder._batch_size = 8

    def progress(p):
        if p.phase == "indexing" and p.done >= 8:
            cancel.cancel()

    report = library.index([tmp_path / "catalog"], progress=progress, cancel=cancel)
    assert report.cancelled
    kept = library.catalog.stats(library.model_key).ok
    assert 8 <= kept < 40
    assert len(library.vector_index) == kept
    report = library.index()
    assert report.added == 40 - kept
    assert library.catalog.stats(library.model_key).ok == 40
    assert len(library.vector_index) == 40


def test_a_nested_folder_added_later_takes_over_its_images(library, tmp_path):
    outer, inner = tmp_path / "catalog", tmp_path / "catalog" / "lamps"
    make_catalog(outer, 2)
    lamp = write_image(inner / "lamp.jpg", 50)
    library.index([outer])
    lamp_id = library.catalog.id_for_path(str(lamp))
    library.index([inner])
    folder = library.catalog.folder_by_path(str(inner))
    assert library.catalog.records([lamp_id])[lamp_id].folder_id == folder.id


def test_symlink_loop_does_not_hang_the_scan(library, tmp_path):
    root = tmp_path / "catalog"
    make_catalog(root, 2)
    (root / "loop").symlink_to(root, target_is_directory=True)
    report = library.index([root])
    assert report.added == 2


def test_a_data_folder_inside_a_catalog_folder_is_not_catalogued(settings, tmp_path):
    from visualfinder.library.facade import open_library

    root = tmp_path / "catalog"
    make_catalog(root, 3)
    lib = open_library(settings.replace(data_dir=root / "vf-library"))
    try:
        lib.index([root])
        assert lib.index([root]).added == 0  # the thumbnails written by the first run stay out
        assert lib.catalog.stats(lib.model_key).ok == 3
        assert any((root / "vf-library" / "thumbs").rglob("*.jpg"))
    finally:
        lib.close()


def test_thumbnails_are_full_size_even_when_the_model_input_is_smaller(library, tmp_path):
    from PIL import Image

    photo = write_image(tmp_path / "catalog" / "photo.jpg", 3, size=(1600, 1200))
    library.index([tmp_path / "catalog"])
    record = next(iter(library.catalog.records([library.catalog.id_for_path(str(photo))]).values()))
    with Image.open(record.thumb_path) as thumb:
        assert max(thumb.size) == library.settings.thumbnail_size
