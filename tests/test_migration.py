"""Schema upgrades keep every row: a catalog written by the schema-1 code opens as schema 2."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np

from visualfinder.catalog.filters import Filters
from visualfinder.catalog.schema import SCHEMA_VERSION
from visualfinder.catalog.store import Catalog
from visualfinder.library.facade import QueryTerm, SearchRequest, open_library

FIXTURE = Path(__file__).parent / "fixtures" / "catalog_v1.db"
TINY_KEY = "vf-tiny/random-seed0"


def _v1_rows(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {
            "images": conn.execute(
                "SELECT id, path, folder_id, size, mtime_ns, content_hash, width, height, format, status, error,"
                " thumb_path FROM images ORDER BY id"
            ).fetchall(),
            "vectors": conn.execute(
                "SELECT id, model_key, embedding FROM images WHERE embedding IS NOT NULL ORDER BY id"
            ).fetchall(),
            "tags": conn.execute("SELECT image_id, tag FROM tags ORDER BY image_id, tag").fetchall(),
            "meta_rows": conn.execute("SELECT * FROM image_meta ORDER BY image_id").fetchall(),
            "outbox": conn.execute("SELECT id, op, image_id, doc_id FROM outbox ORDER BY id").fetchall(),
            "folders": conn.execute("SELECT id, path FROM folders ORDER BY id").fetchall(),
            "meta": dict(conn.execute("SELECT key, value FROM meta").fetchall()),
        }
    finally:
        conn.close()


def test_the_fixture_really_is_a_schema_1_catalog():
    rows = _v1_rows(FIXTURE)
    assert rows["meta"]["schema_version"] == "1"
    assert len(rows["vectors"]) == 5 and len(rows["images"]) == 6


def test_a_schema_1_catalog_migrates_forward_with_its_data_intact(tmp_path):
    db = tmp_path / "catalog.db"
    shutil.copyfile(FIXTURE, db)
    before = _v1_rows(db)
    catalog = Catalog(db)
    try:
        assert catalog.schema_version() == SCHEMA_VERSION == 3
        assert catalog.integrity_ok()
        conn = catalog.conn
        columns = {r[1] for r in conn.execute("PRAGMA table_info(images)")}
        assert not columns & {"embedding", "model_key", "vector_gen"}
        assert (
            conn.execute(
                "SELECT id, path, folder_id, size, mtime_ns, content_hash, width, height, format, status, error,"
                " thumb_path FROM images ORDER BY id"
            ).fetchall()
            == before["images"]
        )
        moved = conn.execute(
            "SELECT image_id, model_key, vector FROM embeddings ORDER BY image_id"
        ).fetchall()
        assert moved == before["vectors"]
        assert (
            conn.execute("SELECT image_id, tag FROM tags ORDER BY image_id, tag").fetchall() == before["tags"]
        )
        assert conn.execute("SELECT * FROM image_meta ORDER BY image_id").fetchall() == before["meta_rows"]
        assert (
            conn.execute("SELECT id, op, image_id, doc_id FROM outbox ORDER BY id").fetchall()
            == before["outbox"]
        )
        assert conn.execute("SELECT id, path FROM folders ORDER BY id").fetchall() == before["folders"]
        assert catalog.library_id == before["meta"]["library_id"]
        assert catalog.generation == int(before["meta"]["generation"])
        assert catalog.meta("metric") == "cosine"
        ids = [r[0] for r in before["vectors"]]
        assert catalog.embedded_ids(TINY_KEY).tolist() == ids
        assert catalog.model_counts() == {TINY_KEY: 5}
    finally:
        catalog.close()


def test_a_migrated_library_opens_searches_and_keeps_its_metadata(tmp_path, settings):
    settings.data_dir.mkdir(parents=True)
    shutil.copyfile(FIXTURE, settings.data_dir / "catalog.db")
    before = _v1_rows(FIXTURE)
    library = open_library(settings)
    try:
        assert library.model_key == TINY_KEY and library.catalog.active_model().key == TINY_KEY
        assert len(library.vector_index) == 5 and library.index_health == "rebuilt"
        oak_id = next(image_id for image_id, tag in before["tags"] if tag == "oak")
        stored = np.frombuffer(dict((r[0], r[2]) for r in before["vectors"])[oak_id], dtype=np.float16)
        response = library.search(SearchRequest([QueryTerm("similar", oak_id)], k=3))
        assert response.results[0].id == oak_id and response.results[0].score > 0.999
        record = response.results[0].record
        assert (record.sku, record.title, record.price) == ("AB-12", "Oak chair", 129.5)
        assert record.tags == ["living room", "oak"] and record.extra == {"colour": "natural"}
        np.testing.assert_array_equal(
            library.catalog.embedding_of(oak_id, TINY_KEY), stored.astype(np.float32)
        )
        by_tag = library.search(
            SearchRequest([QueryTerm("similar", oak_id)], k=5, filters=Filters(tags_all=["brass"]))
        )
        assert [r.record.tags for r in by_tag.results] == [["brass"]]
    finally:
        library.close()


def test_skips_recorded_before_schema_3_get_their_kind_and_transient_ones_are_due(tmp_path):
    db = tmp_path / "catalog.db"
    shutil.copyfile(Path(__file__).parent / "fixtures" / "catalog_v2.db", db)
    conn = sqlite3.connect(db)
    (broken,) = conn.execute("SELECT path FROM images WHERE status = 'error'").fetchone()
    # A row as schema 2 recorded a file it could not open (the fixture's own skip is not an image).
    conn.execute(
        "INSERT INTO images(path, folder_id, size, mtime_ns, status, error, indexed_at) "
        "SELECT path || '.locked.jpg', folder_id, 1, 1, 'error', 'permission denied', 0 FROM images WHERE path = ?",
        (broken,),
    )
    conn.commit()
    conn.close()
    catalog = Catalog(db)
    try:
        kinds = {(f.path, f.kind, f.attempts, f.retry_at) for f in catalog.skipped_files()}
        assert kinds == {(broken, "permanent", 1, None), (broken + ".locked.jpg", "transient", 1, None)}
    finally:
        catalog.close()
