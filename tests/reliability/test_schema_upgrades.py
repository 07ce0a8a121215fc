"""Catalogs of every released schema migrate forward, and a kill -9 during a migration loses nothing.

tests/test_migration.py checks the schema-1 fixture field by field. Here: a fixture must exist
for every released schema, the current one included (tests/fixtures/catalog_vN.db, written by
the schema-N code with make_catalog_vN.py: once the schema moves on, nothing can write the old
one any more), and each one opens, upgrades and searches with its user data intact (tags,
product metadata, duplicate decisions, sidecars, every model's vectors); and the migration of a
large catalog is killed at seeded random moments: the file is always either wholly the old
schema or wholly the new one.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from rel_harness import finish, kill9, rng_for, scaled, start_cli, wait_until

from visualfinder.catalog.schema import SCHEMA_VERSION
from visualfinder.catalog.store import Catalog
from visualfinder.library.facade import CATALOG_FILE, QueryTerm, SearchRequest, open_library

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RELEASED = list(range(1, SCHEMA_VERSION + 1))
OLDER = RELEASED[:-1]  # the ones a migration upgrades


def _fixture(version: int) -> Path:
    return FIXTURES / f"catalog_v{version}.db"


def _counts(path: Path) -> tuple[int, int, int]:
    """(schema version, images, embedded images) whatever the schema."""
    conn = sqlite3.connect(path)
    try:
        version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "embeddings" in tables:
            embedded = conn.execute("SELECT COUNT(DISTINCT image_id) FROM embeddings").fetchone()[0]
        else:
            embedded = conn.execute("SELECT COUNT(*) FROM images WHERE embedding IS NOT NULL").fetchone()[0]
        return version, images, embedded
    finally:
        conn.close()


def _user_data(path: Path) -> dict[str, object]:
    """What the user made, by image path, in whichever schema: it must survive every upgrade."""
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        data: dict[str, object] = {
            "tags": conn.execute(
                "SELECT i.path, t.tag FROM tags t JOIN images i ON i.id = t.image_id ORDER BY 1, 2"
            ).fetchall(),
            "metadata": conn.execute(
                "SELECT i.path, m.sku, m.title, m.description, m.url, m.price, m.extra "
                "FROM image_meta m JOIN images i ON i.id = m.image_id ORDER BY 1"
            ).fetchall(),
            "errors": conn.execute(
                "SELECT path, error FROM images WHERE status = 'error' ORDER BY 1"
            ).fetchall(),
        }
        if "embeddings" in tables:
            data["vectors"] = conn.execute(
                "SELECT i.path, e.model_key, e.vector FROM embeddings e JOIN images i ON i.id = e.image_id "
                "ORDER BY 1, 2"
            ).fetchall()
        else:
            data["vectors"] = conn.execute(
                "SELECT path, model_key, embedding FROM images WHERE embedding IS NOT NULL ORDER BY 1, 2"
            ).fetchall()
        if "duplicate_decisions" in tables:
            data["decisions"] = conn.execute(
                "SELECT a.path, b.path, d.decision FROM duplicate_decisions d "
                "JOIN images a ON a.id = d.id_a JOIN images b ON b.id = d.id_b ORDER BY 1, 2"
            ).fetchall()
            data["fingerprints"] = conn.execute("SELECT * FROM fingerprints ORDER BY 1").fetchall()
            data["sidecars"] = conn.execute("SELECT path, size, mtime_ns FROM sidecars ORDER BY 1").fetchall()
        return data
    finally:
        conn.close()


def test_every_released_schema_has_a_fixture_catalog():
    missing = [v for v in RELEASED if not _fixture(v).is_file()]
    assert missing == [], (
        f"add tests/fixtures/catalog_v{missing[0]}.db, written by the schema-{missing[0]} code"
    )
    for version in RELEASED:
        assert _counts(_fixture(version))[0] == version


@pytest.mark.parametrize("version", RELEASED)
def test_a_catalog_of_each_released_schema_upgrades_opens_and_searches(tmp_path, settings, version):
    settings.data_dir.mkdir(parents=True)
    db = settings.data_dir / CATALOG_FILE
    shutil.copyfile(_fixture(version), db)
    _, images, embedded = _counts(db)
    before = _user_data(db)
    assert before["tags"] and before["metadata"] and before["errors"] and before["vectors"]  # data to lose
    library = open_library(settings)
    try:
        assert library.catalog.schema_version() == SCHEMA_VERSION and library.catalog.integrity_ok()
        assert _counts(db)[1:] == (images, embedded)
        after = _user_data(db)
        for what, rows in before.items():
            assert after[what] == rows, what
        if version >= 2:  # what schema 2 added has rows in its fixture
            assert before["decisions"] and before["fingerprints"] and before["sidecars"]
            assert len({key for _, key, _ in before["vectors"]}) == 2
        if version >= 3:  # and what schema 3 added: both kinds of skipped file
            assert {f.kind for f in library.catalog.skipped_files()} == {"permanent", "transient"}
        assert len(library.vector_index) == embedded
        some_id = int(library.catalog.embedded_ids(library.model_key)[0])
        best = library.search(SearchRequest([QueryTerm("similar", some_id)], k=1)).results[0]
        assert best.id == some_id and best.score > 0.999
    finally:
        library.close()


def _grow(db: Path, factor_log2: int) -> None:
    """Clone every image row (and its embeddings, in any schema) 2**factor_log2 times."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(images)") if r[1] not in ("id", "path")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for round_ in range(factor_log2):
            conn.execute("BEGIN")
            top = conn.execute("SELECT MAX(id) FROM images").fetchone()[0]
            cols = ", ".join(columns)
            conn.execute(
                f"INSERT INTO images(id, path, {cols}) SELECT id + ?, path || '.{round_}', {cols} FROM images",
                (top,),
            )
            if "embeddings" in tables:
                conn.execute(
                    "INSERT INTO embeddings(image_id, model_key, vector, vector_gen) "
                    "SELECT image_id + ?, model_key, vector, vector_gen FROM embeddings WHERE image_id <= ?",
                    (top, top),
                )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@pytest.mark.skipif(not OLDER, reason="no older schema yet")
def test_kill_9_during_a_migration_leaves_the_old_or_the_new_schema_never_a_mix(tmp_path, data_dir):
    trials = scaled(2, 20)
    version = OLDER[-1]
    data_dir.mkdir(parents=True)
    db = data_dir / CATALOG_FILE
    shutil.copyfile(_fixture(version), db)
    _grow(db, scaled(14, 16))  # 6 rows -> ~100k (CI) / ~400k: a migration that takes a while
    pristine = tmp_path / "pristine.db"
    shutil.copyfile(db, pristine)
    _, images, embedded = _counts(db)

    # How long after its start a process has committed the upgrade (a reader sees it then).
    started = time.monotonic()
    proc = start_cli(["--data-dir", str(data_dir), "status"], tmp_path / "calibrate")
    assert wait_until(lambda: _counts(db)[0] == SCHEMA_VERSION, proc)
    duration = time.monotonic() - started
    kill9(proc)  # what follows (building the vector index) is not under test here
    finish(proc)
    rng = rng_for("kill-migration")
    seen = {}
    for trial in range(trials):
        shutil.copyfile(pristine, db)
        for suffix in ("-wal", "-shm"):
            (data_dir / f"{CATALOG_FILE}{suffix}").unlink(missing_ok=True)
        proc = start_cli(["--data-dir", str(data_dir), "status"], tmp_path / f"trial{trial}")
        time.sleep(rng.uniform(0.3, 1.05) * duration)
        kill9(proc)
        finish(proc)
        found = _counts(db)
        assert found in ((version, images, embedded), (SCHEMA_VERSION, images, embedded)), found
        seen[found[0]] = seen.get(found[0], 0) + 1
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
    catalog = Catalog(db)  # the next open finishes the upgrade
    try:
        assert catalog.schema_version() == SCHEMA_VERSION
    finally:
        catalog.close()
    assert _counts(db) == (SCHEMA_VERSION, images, embedded)
    print(f"migration of {images} rows ({duration:.1f}s): after a kill, schema versions {seen}")
