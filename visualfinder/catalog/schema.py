"""The catalog's schema as a migration ladder: each step names the version it produces and why.

Never edit a released step; add a new one (and a fixture catalog of the old version to the
tests, so the upgrade stays proven).
"""

from __future__ import annotations

SCHEMA_VERSION = 3

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema: folders, images with f16 embeddings, product metadata, tags, outbox",
        [
            """CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
            """CREATE TABLE folders(
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                path TEXT NOT NULL UNIQUE,
                watched INTEGER NOT NULL DEFAULT 0,
                added_at REAL NOT NULL)""",
            # AUTOINCREMENT: an id is never reused, so a stale vector-index key can never
            # point at a different image.
            """CREATE TABLE images(
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                path TEXT NOT NULL UNIQUE,
                folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                content_hash TEXT,
                width INTEGER,
                height INTEGER,
                format TEXT,
                status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
                error TEXT,
                embedding BLOB,
                model_key TEXT,
                vector_gen INTEGER NOT NULL DEFAULT 0,
                thumb_path TEXT,
                indexed_at REAL NOT NULL)""",
            "CREATE INDEX images_folder ON images(folder_id)",
            "CREATE INDEX images_hash ON images(content_hash)",
            "CREATE INDEX images_model_gen ON images(model_key, vector_gen)",
            """CREATE TABLE image_meta(
                image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
                sku TEXT, title TEXT, description TEXT, url TEXT, price REAL, extra TEXT)""",
            "CREATE INDEX image_meta_sku ON image_meta(sku)",
            """CREATE TABLE tags(
                image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                tag TEXT NOT NULL,
                PRIMARY KEY (image_id, tag)) WITHOUT ROWID""",
            "CREATE INDEX tags_by_tag ON tags(tag, image_id)",
            """CREATE TABLE outbox(
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
                image_id INTEGER NOT NULL,
                doc_id TEXT NOT NULL,
                enqueued_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT)""",
            "CREATE INDEX outbox_image ON outbox(image_id)",
        ],
    ),
    (
        2,
        "embeddings per model key (model switching), duplicate decisions, perceptual fingerprints, "
        "metadata sidecar state",
        [
            # One row per (image, model): a model switch fills the new model's rows while the old
            # ones keep answering searches. vector_gen is the catalog generation that wrote it.
            """CREATE TABLE embeddings(
                image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                model_key TEXT NOT NULL,
                vector BLOB NOT NULL,
                vector_gen INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (image_id, model_key))""",
            "CREATE INDEX embeddings_model ON embeddings(model_key, image_id)",
            "CREATE INDEX embeddings_model_gen ON embeddings(model_key, vector_gen)",
            """INSERT INTO embeddings(image_id, model_key, vector, vector_gen)
               SELECT id, model_key, embedding, vector_gen FROM images
               WHERE embedding IS NOT NULL AND model_key IS NOT NULL AND status = 'ok'""",
            "DROP INDEX images_model_gen",
            "ALTER TABLE images DROP COLUMN embedding",
            "ALTER TABLE images DROP COLUMN model_key",
            "ALTER TABLE images DROP COLUMN vector_gen",
            # A pair the user declared not a duplicate (or wants to keep both of); id_a < id_b.
            """CREATE TABLE duplicate_decisions(
                id_a INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                id_b INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                decision TEXT NOT NULL CHECK (decision IN ('distinct', 'keep_both')),
                decided_at REAL NOT NULL,
                PRIMARY KEY (id_a, id_b),
                CHECK (id_a < id_b)) WITHOUT ROWID""",
            "CREATE INDEX duplicate_decisions_b ON duplicate_decisions(id_b)",
            # Perceptual hashes by content (copies and moved files share them).
            """CREATE TABLE fingerprints(
                content_hash TEXT PRIMARY KEY,
                hashes BLOB NOT NULL) WITHOUT ROWID""",
            # Metadata sidecars (photo.jpg.json, products.csv) already applied, by their stat.
            """CREATE TABLE sidecars(
                path TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                applied_at REAL NOT NULL)""",
        ],
    ),
    (
        3,
        "skipped files are permanent (not an image: tried when the file changes) or transient "
        "(not readable now: tried again on later scans, with a backoff)",
        [
            """ALTER TABLE images ADD COLUMN error_kind TEXT
                CHECK (error_kind IS NULL OR error_kind IN ('permanent', 'transient'))""",
            "ALTER TABLE images ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE images ADD COLUMN retry_at REAL",  # NULL: due now (transient rows)
            "ALTER TABLE images ADD COLUMN ctime_ns INTEGER",
            # Rows skipped before kinds existed, sorted by the reasons ingest/ wrote for what
            # could not be read (rather than decoded): those are tried on the next scan.
            """UPDATE images SET attempts = 1, error_kind = CASE
                   WHEN error = 'permission denied' OR error LIKE 'cannot read file:%'
                        OR error LIKE 'took too long%' OR error LIKE 'unexpected error%'
                        OR error LIKE 'file disappeared%' OR error LIKE 'not enough memory%'
                   THEN 'transient' ELSE 'permanent' END
               WHERE status = 'error'""",
        ],
    ),
]
