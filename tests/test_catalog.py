"""The catalog: schema and migrations, WAL, batched atomic writes, odd paths."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest
from imagegen import make_catalog, write_image
from searching import search_image

from visualfinder.catalog.schema import SCHEMA_VERSION
from visualfinder.catalog.store import (
    Catalog,
    CatalogChanges,
    ImageWrite,
    path_from_db,
    path_to_db,
    subtree_bounds,
)
from visualfinder.errors import CatalogError


def test_new_catalog_has_schema_version_wal_and_a_library_id(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    assert catalog.schema_version() == SCHEMA_VERSION
    assert catalog.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(catalog.library_id) == 12 and catalog.generation == 0
    tables = {row[0] for row in catalog.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables >= {"meta", "folders", "images", "image_meta", "tags", "outbox"}
    catalog.close()


def test_a_catalog_from_a_newer_version_is_refused(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    catalog.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    catalog.close()
    with pytest.raises(CatalogError, match="newer than this visualfinder"):
        Catalog(tmp_path / "c.db")


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "c.db").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(CatalogError, match="not a visualfinder catalog or is damaged"):
        Catalog(tmp_path / "c.db")


def test_a_failed_batch_leaves_nothing_behind(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    folder = catalog.add_folder("/photos")
    good = ImageWrite("/photos/a.jpg", folder.id, 1, 1, embedding=np.ones(4), model_key="m")
    catalog.apply(CatalogChanges(inserts=[good]))
    generation = catalog.generation
    clash = ImageWrite("/photos/a.jpg", folder.id, 1, 1)  # violates UNIQUE(path)
    with pytest.raises(sqlite3.IntegrityError):
        catalog.apply(CatalogChanges(inserts=[ImageWrite("/photos/b.jpg", folder.id, 1, 1), clash]))
    assert catalog.generation == generation
    assert catalog.stat_row("/photos/b.jpg") is None
    catalog.close()


def test_embeddings_are_stored_as_float16_and_read_back(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    folder = catalog.add_folder("/p")
    vector = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    applied = catalog.apply(
        CatalogChanges(inserts=[ImageWrite("/p/x.jpg", folder.id, 1, 1, embedding=vector, model_key="m")])
    )
    blob = catalog.conn.execute("SELECT vector FROM embeddings WHERE model_key = 'm'").fetchone()[0]
    assert len(blob) == 512 * 2
    np.testing.assert_allclose(
        catalog.embedding_of(applied.inserted_ids[0], "m"), vector, rtol=1e-3, atol=1e-3
    )
    ids, vectors = next(catalog.iter_embeddings("m"))
    assert ids.tolist() == applied.inserted_ids and vectors.dtype == np.float16
    catalog.close()


def test_ids_are_never_reused(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    folder = catalog.add_folder("/p")
    first = catalog.apply(CatalogChanges(inserts=[ImageWrite("/p/a.jpg", folder.id, 1, 1)])).inserted_ids[0]
    catalog.apply(CatalogChanges(deletes=[first]))
    second = catalog.apply(CatalogChanges(inserts=[ImageWrite("/p/a.jpg", folder.id, 1, 1)])).inserted_ids[0]
    assert second > first
    catalog.close()


def test_subtree_bounds_match_children_only():
    low, high = subtree_bounds("/cat/chairs")
    assert low <= "/cat/chairs/a.jpg" < high
    assert low <= "/cat/chairs/deep/b.jpg" < high
    assert not (low <= "/cat/chairs2/a.jpg" < high)
    assert not (low <= "/cat/chairs" < high)
    assert not (low <= "/cat/chairs.jpg" < high)


def test_non_utf8_path_round_trips_through_the_catalog():
    weird = os.fsdecode(b"/photos/caf\xe9-\xff.jpg")
    stored = path_to_db(weird)
    stored.encode("utf-8")  # storable as SQLite text
    assert path_from_db(stored) == weird
    assert path_to_db("/plain/ascii.jpg") == "/plain/ascii.jpg"


def test_a_file_with_a_non_utf8_name_is_indexed(library, tmp_path):
    root = tmp_path / "catalog"
    make_catalog(root, 1)
    odd = os.path.join(os.fsencode(root), b"sof\xe4-\xff.jpg")
    write_image(root / "tmp.jpg", 5).rename(os.fsdecode(odd))
    report = library.index([root])
    assert report.added == 2 and not report.errors
    results = search_image(library, os.fsdecode(odd), k=1)
    assert results[0].path == os.fsdecode(odd)


def test_outbox_records_changes_only_once_sync_is_enabled(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    assert library.catalog.stats(library.model_key).outbox_pending == 0
    library.catalog.enable_outbox()
    files[0].unlink()
    make_catalog(tmp_path / "catalog", 1, start_seed=30)
    library.index()
    ops = library.catalog.conn.execute("SELECT op, doc_id FROM outbox ORDER BY id").fetchall()
    assert sorted(op for op, _ in ops) == ["delete", "upsert"]
    assert all(doc_id.startswith(library.catalog.library_id + "-") for _, doc_id in ops)


def test_tags_are_normalised_listed_and_counted(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    assert library.products.add_tags(files[0], ["  Oak ", "oak", "Living  Room", ""]) == [
        "living room",
        "oak",
    ]
    library.products.add_tags(files[1], ["OAK"])
    assert library.products.all_tags() == [("oak", 2), ("living room", 1)]
    assert library.products.remove_tags(files[0], ["OAK"]) == ["living room"]


def test_library_events_reach_subscribers(library, tmp_path):
    events = []
    unsubscribe = library.events.subscribe(events.append)
    make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    assert [type(e).__name__ for e in events] == ["LibraryChanged"] and events[0].report.added == 2
    unsubscribe()
    library.index()
    assert len(events) == 1
