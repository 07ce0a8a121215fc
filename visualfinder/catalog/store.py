"""The catalog: SQLite (WAL) holding folders, images, their embeddings, metadata and the outbox.

SQLite is the source of truth. Each image's embeddings live in `embeddings`, one float16 blob
per (image, model key), so the vector index can always be rebuilt from here without
re-embedding, and a model switch can fill a second model's vectors beside the first. The
library's active model (the one its index serves) is recorded in `meta`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from visualfinder.catalog.records import (
    AppliedChanges,
    CatalogChanges,
    CatalogStats,
    EmbeddedSource,
    Folder,
    ImageRecord,
    ImageWrite,
    ModelRef,
    SkippedFile,
    StatRow,
    blob_to_embedding,
    embedding_to_blob,
    normalise_tags,
    path_from_db,
    path_to_db,
    sql_chunks,
    subtree_bounds,
)
from visualfinder.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from visualfinder.catalog.vectors import VectorStore
from visualfinder.errors import CatalogError, ImageNotFoundError
from visualfinder.paths import normalise

# The records are written beside the catalog; the rest of the code imports them from here.
__all__ = [
    "AppliedChanges", "Catalog", "CatalogChanges", "CatalogStats", "EmbeddedSource", "Folder", "ImageRecord",
    "ImageWrite", "ModelRef", "SkippedFile", "StatRow", "blob_to_embedding", "embedding_to_blob", "normalise_tags",
    "path_from_db", "path_to_db", "subtree_bounds",
]  # fmt: skip

log = logging.getLogger(__name__)


class Catalog(VectorStore):
    """Thread-safe access to one catalog file: one SQLite connection per thread, WAL mode."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise CatalogError(_describe_db_error(self.path, exc)) from exc
        except OSError as exc:
            self.close()
            raise CatalogError(f"cannot open catalog {self.path}: {exc.strerror or exc}") from exc

    # --- connections and transactions ----------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise CatalogError("the catalog is closed")
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: an application crash never corrupts or loses a commit;
            # a power loss may roll back the last few commits, never corrupting the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested use joins the outer transaction."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise CatalogError(_describe_db_error(self.path, exc)) from exc
        try:
            yield conn
        except sqlite3.OperationalError as exc:  # disk full, I/O error: a typed, one-line error
            _rollback(conn)
            raise CatalogError(_describe_db_error(self.path, exc)) from exc
        except BaseException:
            _rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(conn)
            raise CatalogError(_describe_db_error(self.path, exc)) from exc

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass
        self._local = threading.local()

    def _migrate(self) -> None:
        conn = self.conn
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog {self.path} has schema version {current}, newer than this visualfinder "
                f"understands ({SCHEMA_VERSION}); upgrade visualfinder to open it"
            )
        for version, reason, statements in MIGRATIONS:
            if version <= current:
                continue
            if version == 2 and sqlite3.sqlite_version_info < (3, 35, 0):
                raise CatalogError(
                    f"catalog {self.path} needs upgrading, which needs SQLite 3.35 or newer "
                    f"(this Python has {sqlite3.sqlite_version}); use a newer Python build"
                )
            log.info("migrating catalog to schema %d: %s", version, reason)
            with self.transaction():
                for statement in statements:
                    conn.execute(statement)
                self._set_meta(conn, "schema_version", str(version))
                if version == 1:
                    self._set_meta(conn, "library_id", uuid.uuid4().hex[:12])
                    self._set_meta(conn, "generation", "0")
                    self._set_meta(conn, "created_at", repr(time.time()))

    def schema_version(self) -> int:
        conn = self.conn
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # --- meta ----------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            self._set_meta(conn, key, value)

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def library_id(self) -> str:
        return self.meta("library_id") or ""

    @property
    def generation(self) -> int:
        return int(self.meta("generation", "0") or 0)

    def _bump_generation(self, conn: sqlite3.Connection) -> int:
        generation = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]) + 1
        self._set_meta(conn, "generation", str(generation))
        return generation

    def doc_id(self, image_id: int) -> str:
        """Stable remote document id: unique across libraries syncing to one cluster."""
        return f"{self.library_id}-{image_id}"

    # --- the library's model ---------------------------------------------------------------

    def active_model(self) -> ModelRef | None:
        """The model whose vectors the library's index serves (None before the first open)."""
        return self._model_meta("model")

    def set_active_model(self, model: ModelRef, *, finish_switch: bool = False) -> int:
        """Record the active model; `finish_switch` also ends the pending switch and bumps the
        generation (every index built for the old model is stale). Returns the generation."""
        with self.transaction() as conn:
            self._set_model_meta(conn, "model", model)
            if not finish_switch:
                return self.generation
            conn.execute("DELETE FROM meta WHERE key LIKE 'switch\\_%' ESCAPE '\\'")
            if self.outbox_enabled:  # every document's vector changed: the mirror needs them all
                conn.execute(
                    """INSERT INTO outbox(op, image_id, doc_id, enqueued_at)
                       SELECT 'upsert', image_id, ? || '-' || image_id, ? FROM embeddings WHERE model_key = ?""",
                    (self.library_id, time.time(), model.key),
                )
            return self._bump_generation(conn)

    def model_and_metric(self) -> tuple[str | None, str | None]:
        """The active model's key and the metric, as committed (None where not recorded yet)."""
        rows = dict(self.conn.execute("SELECT key, value FROM meta WHERE key IN ('model_key', 'metric')"))
        return rows.get("model_key"), rows.get("metric")

    def pending_switch(self) -> ModelRef | None:
        """The model a switch is filling vectors for, if one was started and not finished."""
        return self._model_meta("switch")

    def set_pending_switch(self, model: ModelRef | None) -> None:
        with self.transaction() as conn:
            if model is None:
                conn.execute("DELETE FROM meta WHERE key LIKE 'switch\\_%' ESCAPE '\\'")
            else:
                self._set_model_meta(conn, "switch", model)
                self._set_meta(conn, "switch_started_at", repr(time.time()))

    def _model_meta(self, prefix: str) -> ModelRef | None:
        rows = dict(
            self.conn.execute(
                "SELECT key, value FROM meta WHERE key IN (?, ?, ?)",
                (f"{prefix}_name", f"{prefix}_pretrained", f"{prefix}_key"),
            ).fetchall()
        )
        if f"{prefix}_key" not in rows:
            return None
        return ModelRef(
            rows.get(f"{prefix}_name", ""), rows.get(f"{prefix}_pretrained", ""), rows[f"{prefix}_key"]
        )

    def _set_model_meta(self, conn: sqlite3.Connection, prefix: str, model: ModelRef) -> None:
        self._set_meta(conn, f"{prefix}_name", model.name)
        self._set_meta(conn, f"{prefix}_pretrained", model.pretrained)
        self._set_meta(conn, f"{prefix}_key", model.key)

    def _active_key(self) -> str:
        model = self.active_model()
        return model.key if model else ""

    @property
    def outbox_enabled(self) -> bool:
        return self.meta("outbox_enabled") == "1"

    def enable_outbox(self, enabled: bool = True) -> int:
        """Start (or stop) recording changes for OpenSearch; stopping drops the queued ones
        and returns how many there were."""
        with self.transaction() as conn:
            self._set_meta(conn, "outbox_enabled", "1" if enabled else "0")
            return 0 if enabled else conn.execute("DELETE FROM outbox").rowcount

    # --- folders -------------------------------------------------------------------------

    def add_folder(self, path: str, watched: bool | None = None) -> Folder:
        db_path = path_to_db(path)
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO folders(path, watched, added_at) VALUES (?, ?, ?) ON CONFLICT(path) DO NOTHING",
                (db_path, int(bool(watched)), time.time()),
            )
            if watched is not None:
                conn.execute("UPDATE folders SET watched = ? WHERE path = ?", (int(watched), db_path))
        folder = self.folder_by_path(path)
        assert folder is not None
        return folder

    def folders(self) -> list[Folder]:
        rows = self.conn.execute("SELECT id, path, watched, added_at FROM folders ORDER BY path").fetchall()
        return [Folder(r[0], path_from_db(r[1]), bool(r[2]), r[3]) for r in rows]

    def folder_by_path(self, path: str) -> Folder | None:
        row = self.conn.execute(
            "SELECT id, path, watched, added_at FROM folders WHERE path = ?", (path_to_db(path),)
        ).fetchone()
        return Folder(row[0], path_from_db(row[1]), bool(row[2]), row[3]) if row else None

    def folder_for_path(self, path: str) -> Folder | None:
        """The deepest registered folder that contains `path` (or is it)."""
        best: Folder | None = None
        for folder in self.folders():
            low, high = subtree_bounds(folder.path)
            db_path = path_to_db(path)
            if (db_path == path_to_db(folder.path) or low <= db_path < high) and (
                best is None or len(folder.path) > len(best.path)
            ):
                best = folder
        return best

    def set_folder_watched(self, folder_id: int, watched: bool) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE folders SET watched = ? WHERE id = ?", (int(watched), folder_id))

    def remove_folder(self, folder_id: int) -> list[int]:
        """Forget a folder and the images that belong to it; returns the removed image ids."""
        with self.transaction() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM images WHERE folder_id = ?", (folder_id,))]
            self._delete_images(conn, ids)
            conn.execute("DELETE FROM folders WHERE id = ?", (folder_id,))
            if ids:
                self._bump_generation(conn)
        return ids

    def folder_counts(self) -> dict[int, tuple[int, int]]:
        """folder id -> (ok images, error images)."""
        rows = self.conn.execute(
            "SELECT folder_id, SUM(status = 'ok'), SUM(status = 'error') FROM images GROUP BY folder_id"
        )
        return {r[0]: (r[1] or 0, r[2] or 0) for r in rows}

    # --- scan state ----------------------------------------------------------------------

    def stat_rows_under(self, folder: str, model_key: str | None = None) -> dict[str, StatRow]:
        """Every catalogued file below `folder`, keyed by path, for the stat-based diff.

        `has_embedding` tells whether the row has a vector from `model_key` (default: the
        library's active model).
        """
        low, high = subtree_bounds(folder)
        rows = self.conn.execute(
            f"SELECT {_STAT_COLUMNS} FROM {_STAT_FROM} WHERE i.path >= ? AND i.path < ?",
            (model_key or self._active_key(), low, high),
        )
        return {row.path: row for row in map(_stat_row, rows)}

    def stat_row(self, path: str, model_key: str | None = None) -> StatRow | None:
        r = self.conn.execute(
            f"SELECT {_STAT_COLUMNS} FROM {_STAT_FROM} WHERE i.path = ?",
            (model_key or self._active_key(), path_to_db(path)),
        ).fetchone()
        return _stat_row(r) if r else None

    def stat_rows_with_hash(self, content_hash: str, model_key: str | None = None) -> list[StatRow]:
        """Every catalogued file with this content (a move's possible sources)."""
        rows = self.conn.execute(
            f"SELECT {_STAT_COLUMNS} FROM {_STAT_FROM} WHERE i.content_hash = ?",
            (model_key or self._active_key(), content_hash),
        )
        return [_stat_row(r) for r in rows]

    def embedded_source(self, content_hash: str, model_key: str) -> EmbeddedSource | None:
        """Any row with this content and an embedding from this model (for moves and copies).

        CROSS JOIN keeps images (by content hash) the outer loop: SQLite would otherwise lead
        with the model's index and visit every vector of the model, for each new file indexed.
        """
        r = self.conn.execute(
            """SELECT i.id, i.width, i.height, i.format, i.thumb_path, e.vector
               FROM images i CROSS JOIN embeddings e ON e.image_id = i.id AND e.model_key = ?
               WHERE i.content_hash = ? AND i.status = 'ok' LIMIT 1""",
            (model_key, content_hash),
        ).fetchone()
        if not r:
            return None
        return EmbeddedSource(r[0], r[1], r[2], r[3], r[4], blob_to_embedding(r[5]))

    # --- writes --------------------------------------------------------------------------

    def apply(self, changes: CatalogChanges) -> AppliedChanges:
        """Commit a batch atomically; bumps the generation and fills the outbox."""
        now = time.time()
        with self.transaction() as conn:
            generation = self._bump_generation(conn)
            outbox = self.outbox_enabled
            inserted: list[int] = []
            for w in changes.inserts:
                cur = conn.execute(
                    """INSERT INTO images(path, folder_id, size, mtime_ns, content_hash, width, height,
                           format, status, error, thumb_path, error_kind, attempts, retry_at, ctime_ns,
                           indexed_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (*self._write_values(w), now),
                )
                inserted.append(cur.lastrowid)
                self._put_vector(conn, cur.lastrowid, w, generation)
                if outbox and w.status == "ok":
                    self._enqueue(conn, "upsert", cur.lastrowid, now)
            for image_id, w in changes.updates:
                # New content invalidates every model's vector; the same content (re-embedded
                # for another model, or a stat change) keeps the other models' vectors.
                conn.execute(
                    """DELETE FROM embeddings WHERE image_id = ?
                       AND (model_key = ? OR ? = 'error'
                            OR (SELECT content_hash FROM images WHERE id = ?) IS NOT ?)""",
                    (image_id, w.model_key or "", w.status, image_id, w.content_hash),
                )
                conn.execute(
                    """UPDATE images SET path = ?, folder_id = ?, size = ?, mtime_ns = ?, content_hash = ?,
                           width = ?, height = ?, format = ?, status = ?, error = ?, thumb_path = ?,
                           error_kind = ?, attempts = ?, retry_at = ?, ctime_ns = ?, indexed_at = ?
                       WHERE id = ?""",
                    (*self._write_values(w), now, image_id),
                )
                self._put_vector(conn, image_id, w, generation)
                if outbox:
                    self._enqueue(conn, "upsert" if w.status == "ok" else "delete", image_id, now)
            for image_id, w in changes.moves:
                conn.execute(
                    "UPDATE images SET path = ?, folder_id = ?, size = ?, mtime_ns = ?, indexed_at = ? WHERE id = ?",
                    (path_to_db(w.path), w.folder_id, w.size, w.mtime_ns, now, image_id),
                )
                if outbox:
                    self._enqueue(conn, "upsert", image_id, now)
            self._delete_images(conn, changes.deletes, now)
        return AppliedChanges(generation, inserted)

    @staticmethod
    def _write_values(w: ImageWrite) -> tuple:
        return (
            path_to_db(w.path), w.folder_id, w.size, w.mtime_ns, w.content_hash, w.width, w.height,
            w.format, w.status, w.error, w.thumb_path,
            *((w.error_kind, w.attempts, w.retry_at, w.ctime_ns) if w.error else (None, 0, None, None)),
        )  # fmt: skip

    @staticmethod
    def _put_vector(conn: sqlite3.Connection, image_id: int, w: ImageWrite, generation: int) -> None:
        if w.embedding is None or w.status != "ok" or not w.model_key:
            return
        conn.execute(
            """INSERT INTO embeddings(image_id, model_key, vector, vector_gen) VALUES (?, ?, ?, ?)
               ON CONFLICT(image_id, model_key) DO UPDATE SET vector = excluded.vector,
                   vector_gen = excluded.vector_gen""",
            (image_id, w.model_key, embedding_to_blob(w.embedding), generation),
        )

    def _delete_images(self, conn: sqlite3.Connection, ids: list[int], now: float | None = None) -> None:
        if not ids:
            return
        now = now or time.time()
        outbox = self.outbox_enabled
        for chunk in sql_chunks(ids):
            marks = ",".join("?" * len(chunk))
            if outbox:
                for (image_id,) in conn.execute(
                    f"SELECT id FROM images WHERE id IN ({marks}) AND status = 'ok'", chunk
                ).fetchall():
                    self._enqueue(conn, "delete", image_id, now)
            conn.execute(f"DELETE FROM images WHERE id IN ({marks})", chunk)

    def enqueue_upserts(self, conn: sqlite3.Connection, image_ids: Iterable[int]) -> None:
        """Inside a transaction: tell the remote mirror these images' documents changed."""
        if self.outbox_enabled:
            now = time.time()
            for image_id in image_ids:
                self._enqueue(conn, "upsert", image_id, now)

    def _enqueue(self, conn: sqlite3.Connection, op: str, image_id: int, now: float) -> None:
        conn.execute(
            "INSERT INTO outbox(op, image_id, doc_id, enqueued_at) VALUES (?, ?, ?, ?)",
            (op, image_id, self.doc_id(image_id), now),
        )

    # --- tags ----------------------------------------------------------------------------
    # Tags are stored lower-case and trimmed, so filters match regardless of how they were typed.

    def add_tags(self, image_id: int, tags: Iterable[str]) -> None:
        clean = normalise_tags(tags)
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO tags(image_id, tag) VALUES (?, ?)", [(image_id, t) for t in clean]
            )
            if self.outbox_enabled and clean:
                self._enqueue(conn, "upsert", image_id, time.time())

    def remove_tags(self, image_id: int, tags: Iterable[str]) -> None:
        clean = normalise_tags(tags)
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM tags WHERE image_id = ? AND tag = ?", [(image_id, t) for t in clean]
            )
            if self.outbox_enabled and clean:
                self._enqueue(conn, "upsert", image_id, time.time())

    def tags_of(self, image_id: int) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute("SELECT tag FROM tags WHERE image_id = ? ORDER BY tag", (image_id,))
        ]

    def tag_counts(self) -> list[tuple[str, int]]:
        rows = self.conn.execute("SELECT tag, COUNT(*) AS n FROM tags GROUP BY tag ORDER BY n DESC, tag")
        return [(r[0], r[1]) for r in rows]

    # --- queries -------------------------------------------------------------------------

    def image_id(self, ref: int | str | os.PathLike) -> int:
        """The id of an image given by id or by path (ImageNotFoundError if there is none)."""
        if isinstance(ref, (int, np.integer)):
            found = self.conn.execute("SELECT id FROM images WHERE id = ?", (int(ref),)).fetchone()
            image_id = found[0] if found else None
        else:
            image_id = self.id_for_path(normalise(ref))
        if image_id is None:
            raise ImageNotFoundError(f"{ref} is not in the library")
        return image_id

    def id_for_path(self, path: str) -> int | None:
        row = self.conn.execute("SELECT id FROM images WHERE path = ?", (path_to_db(path),)).fetchone()
        return row[0] if row else None

    def select_ids(
        self,
        where_sql: str,
        params: Iterable[object],
        model_key: str | None = None,
        within: Iterable[int] | None = None,
    ) -> np.ndarray:
        """Ids of images matching a WHERE clause over `images i` (built by the planner), sorted.

        `model_key` keeps only images with that model's vector; `within` only those ids.
        """
        sql, args = self._where_sql("i.id", where_sql, params, model_key)
        if within is None:
            rows = self.conn.execute(sql + " ORDER BY i.id", args)
            return np.fromiter((r[0] for r in rows), dtype=np.uint64)
        found: list[int] = []
        for part in sql_chunks([int(i) for i in within]):
            marks = ",".join("?" * len(part))
            found += [r[0] for r in self.conn.execute(f"{sql} AND i.id IN ({marks})", (*args, *part))]
        return np.array(sorted(found), dtype=np.uint64)

    def browse_ids(self, where_sql: str, params: Iterable[object], limit: int) -> np.ndarray:
        """Up to `limit` 'ok' images matching the clause, most recently modified first."""
        rows = self.conn.execute(
            f"""SELECT i.id FROM images i WHERE i.status = 'ok' AND ({where_sql})
                ORDER BY i.mtime_ns DESC, i.id LIMIT ?""",
            (*params, int(limit)),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.uint64)

    def count_where(
        self, where_sql: str, params: Iterable[object], model_key: str | None = None, limit: int | None = None
    ) -> int:
        """How many images match; with `limit`, counting stops there (min(count, limit))."""
        if limit is None:
            sql, args = self._where_sql("COUNT(*)", where_sql, params, model_key)
            return self.conn.execute(sql, args).fetchone()[0]
        sql, args = self._where_sql("1", where_sql, params, model_key)
        return self.conn.execute(f"SELECT COUNT(*) FROM ({sql} LIMIT ?)", (*args, int(limit))).fetchone()[0]

    @staticmethod
    def _where_sql(
        what: str, where_sql: str, params: Iterable[object], model_key: str | None
    ) -> tuple[str, tuple]:
        if model_key is None:
            return f"SELECT {what} FROM images i WHERE ({where_sql})", tuple(params)
        # Filter the images first (path ranges, tags, ... use their indexes), then check the
        # vector by primary key: a join led by embeddings would visit every vector of the model.
        return (
            f"SELECT {what} FROM images i WHERE ({where_sql}) AND EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.image_id = i.id AND e.model_key = ?)",
            (*params, model_key),
        )

    def records(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        id_list = [int(i) for i in ids]
        out: dict[int, ImageRecord] = {}
        for part in sql_chunks(id_list):
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"""SELECT i.id, i.path, i.folder_id, i.size, i.mtime_ns, i.width, i.height, i.format,
                           i.thumb_path, i.content_hash, m.sku, m.title, m.description, m.url, m.price,
                           m.extra
                    FROM images i LEFT JOIN image_meta m ON m.image_id = i.id
                    WHERE i.id IN ({marks})""",
                part,
            ).fetchall()
            for r in rows:
                out[r[0]] = ImageRecord(
                    id=r[0], path=path_from_db(r[1]), folder_id=r[2], size=r[3], mtime_ns=r[4],
                    width=r[5], height=r[6], format=r[7], thumb_path=r[8], content_hash=r[9],
                    sku=r[10], title=r[11], description=r[12], url=r[13], price=r[14],
                    extra=json.loads(r[15]) if r[15] else {},
                )  # fmt: skip
            for image_id, tag in self.conn.execute(
                f"SELECT image_id, tag FROM tags WHERE image_id IN ({marks}) ORDER BY tag", part
            ):
                out[image_id].tags.append(tag)
        return out

    def skipped_files(self, limit: int | None = None) -> list[SkippedFile]:
        """Files indexing skipped, transient ones (tried again on later scans) first, by path."""
        sql = """SELECT path, error, COALESCE(error_kind, 'permanent'), attempts, retry_at FROM images
                 WHERE status = 'error' ORDER BY error_kind = 'transient' DESC, path"""
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [SkippedFile(path_from_db(p), e or "", kind, attempts, retry_at)
                for p, e, kind, attempts, retry_at in self.conn.execute(sql)]  # fmt: skip

    def skipped_counts(self) -> dict[str, int]:
        """Skipped files by kind: {"permanent": n, "transient": m}."""
        rows = self.conn.execute(
            "SELECT COALESCE(error_kind, 'permanent'), COUNT(*) FROM images WHERE status = 'error' GROUP BY 1"
        )
        counts = {"permanent": 0, "transient": 0}
        counts.update(dict(rows.fetchall()))
        return counts

    def transient_retries(self) -> list[tuple[str, float | None]]:
        """Each file skipped for a transient reason and when it is due again (None: at once)."""
        rows = self.conn.execute(
            "SELECT path, retry_at FROM images WHERE status = 'error' AND error_kind = 'transient'"
        )
        return [(path_from_db(p), at) for p, at in rows]

    def stats(self, model_key: str) -> CatalogStats:
        conn = self.conn
        ok, errors = conn.execute(
            "SELECT COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status = 'error'), 0) FROM images"
        ).fetchone()
        embedded = self.count_embedded(model_key)
        return CatalogStats(
            folders=conn.execute("SELECT COUNT(*) FROM folders").fetchone()[0],
            images=ok + errors,
            ok=ok,
            errors=errors,
            embedded_current=embedded,
            needs_embedding=ok - embedded,
            outbox_pending=conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
        )


_STAT_COLUMNS = (
    "i.id, i.path, i.folder_id, i.size, i.mtime_ns, i.status, i.content_hash, e.model_key, e.image_id IS NOT NULL,"
    " i.error_kind, i.attempts, i.retry_at, i.ctime_ns"
)
_STAT_FROM = "images i LEFT JOIN embeddings e ON e.image_id = i.id AND e.model_key = ?"


def _stat_row(r: tuple) -> StatRow:
    return StatRow(
        r[0], path_from_db(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9], r[10], r[11], r[12]
    )


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open; SQLite may have rolled back itself (SQLITE_FULL)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # pragma: no cover - the original error is the one worth reporting
            log.warning("rollback failed", exc_info=True)


def _describe_db_error(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"the catalog {path} is read-only: make the data folder writable or choose another with --data-dir"
    if "disk is full" in text or "disk I/O" in text:
        if _free_bytes(path.parent) < 1 << 20:  # SQLite says "I/O error" when it cannot create its WAL
            text = "the disk is full"
        return f"cannot write the catalog {path}: {text} (free some disk space; nothing was lost)"
    if "not a database" in text or "malformed" in text:
        return f"{path} is not a visualfinder catalog or is damaged ({text})"
    if "unable to open" in text:
        if path.parent.is_dir() and not os.access(path.parent, os.W_OK):  # e.g. a read-only mount
            return f"the catalog {path} is read-only: make the data folder writable or choose another with --data-dir"
        return f"cannot open the catalog {path}: check that the data folder exists and is writable"
    if "locked" in text or "busy" in text:
        return f"the catalog {path} is busy in another process; try again when it has finished"
    return f"catalog error in {path}: {text}"
