"""The USearch file is a cache: stale, missing or damaged, it is rebuilt from SQLite."""

from __future__ import annotations

import os

from imagegen import make_catalog
from searching import search_image

from visualfinder.search.vector_index import VectorIndex, sidecar_path


def _ids(results):
    return [r.id for r in results]


def test_rebuild_restores_identical_results_after_the_index_file_is_deleted(
    library, reopen, tmp_path, data_dir
):
    files = make_catalog(tmp_path / "catalog", 20)
    library.index([tmp_path / "catalog"])
    before = {f: _ids(search_image(library, f, k=5)) for f in files[:4]}
    library.close()
    (data_dir / "index.usearch").unlink()
    lib = reopen()
    assert lib.index_health == "rebuilt"
    assert {f: _ids(search_image(lib, f, k=5)) for f in files[:4]} == before


def test_rebuild_index_without_re_embedding(library, tmp_path, monkeypatch):
    files = make_catalog(tmp_path / "catalog", 10)
    library.index([tmp_path / "catalog"])
    before = _ids(search_image(library, files[3], k=10))
    monkeypatch.setattr(
        library.embedder, "embed_batch", lambda *a: (_ for _ in ()).throw(AssertionError("embedded"))
    )
    assert library.rebuild_index() == 10
    monkeypatch.undo()
    assert _ids(search_image(library, files[3], k=10)) == before


def test_garbage_index_file_is_detected_and_rebuilt(library, reopen, tmp_path, data_dir):
    files = make_catalog(tmp_path / "catalog", 8)
    library.index([tmp_path / "catalog"])
    library.close()
    path = data_dir / "index.usearch"
    path.write_bytes(os.urandom(path.stat().st_size))
    lib = reopen()
    assert lib.index_health == "rebuilt" and len(lib.vector_index) == 8
    assert search_image(lib, files[0], k=1)[0].path == str(files[0])


def test_truncated_index_file_is_detected_and_rebuilt(library, reopen, tmp_path, data_dir):
    files = make_catalog(tmp_path / "catalog", 8)
    library.index([tmp_path / "catalog"])
    library.close()
    path = data_dir / "index.usearch"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    lib = reopen()
    assert lib.index_health == "rebuilt"
    assert search_image(lib, files[5], k=1)[0].path == str(files[5])


def test_index_behind_the_catalog_catches_up_without_a_rebuild(library, reopen, tmp_path, data_dir):
    root = tmp_path / "catalog"
    files = make_catalog(root, 6)
    library.index([root])
    saved = (data_dir / "index.usearch").read_bytes(), sidecar_path(data_dir / "index.usearch").read_text()
    files[0].unlink()
    make_catalog(root, 2, start_seed=100)
    library.index()
    library.close()
    # Simulate a crash before the index was saved: the old file comes back.
    (data_dir / "index.usearch").write_bytes(saved[0])
    sidecar_path(data_dir / "index.usearch").write_text(saved[1])
    lib = reopen()
    assert lib.index_health == "caught up"
    assert sorted(lib.vector_index.keys().tolist()) == sorted(
        lib.catalog.embedded_ids(lib.model_key).tolist()
    )
    assert len(lib.vector_index) == 7


def test_an_index_of_another_catalog_is_not_trusted(library, reopen, tmp_path, data_dir):
    make_catalog(tmp_path / "catalog", 4)
    library.index([tmp_path / "catalog"])
    library.close()
    state = VectorIndex.read_state(data_dir / "index.usearch")
    (data_dir / "catalog.db").unlink()
    for suffix in ("-wal", "-shm"):
        (data_dir / f"catalog.db{suffix}").unlink(missing_ok=True)
    lib = reopen()
    assert lib.catalog.library_id != state.spec.library_id
    assert len(lib.vector_index) == 0


def test_another_process_indexing_is_seen_by_an_open_library(library, reopen, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"])
    other = reopen()
    new = make_catalog(tmp_path / "catalog", 2, start_seed=50)
    other.index()
    assert search_image(library, new[0], k=1)[0].path == str(new[0])
    assert len(search_image(library, files[0], k=10)) == 5
