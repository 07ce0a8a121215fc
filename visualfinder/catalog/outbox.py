"""Reading and acknowledging the catalog's outbox, and the sync state kept in `meta`.

The catalog writes outbox rows in the same transaction as each change (Catalog.apply, tag
edits, deletes) once `Catalog.enable_outbox()` was called. A row leaves the outbox only after
the cluster acknowledged its document. A document the cluster refuses (a mapping error) is
marked rejected: it is reported and not sent again until the image changes, `sync --full`,
or `sync --retry-rejected`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from visualfinder.catalog.records import sql_chunks
from visualfinder.catalog.store import Catalog

REJECTED_PREFIX = "rejected: "
_NOT_REJECTED = f"(last_error IS NULL OR last_error NOT LIKE '{REJECTED_PREFIX}%')"


@dataclass(frozen=True)
class OutboxEntry:
    """One document to send: the newest op for a doc id, standing for all its rows in the batch."""

    doc_id: str
    image_id: int
    op: str  # "upsert" or "delete"
    row_ids: tuple[int, ...]


@dataclass(frozen=True)
class Rejection:
    doc_id: str
    image_id: int
    path: str | None
    error: str
    attempts: int


class Outbox:
    """The outbox table of one catalog (each thread uses its own connection, as the catalog does)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def next_batch(self, after_id: int, limit: int) -> list[OutboxEntry]:
        """Up to `limit` rows after `after_id` (rejected ones skipped), merged per document."""
        rows = self.catalog.conn.execute(
            f"SELECT id, op, image_id, doc_id FROM outbox WHERE id > ? AND {_NOT_REJECTED} ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        merged: dict[str, tuple[int, str, list[int]]] = {}
        for row_id, op, image_id, doc_id in rows:
            _, _, ids = merged.get(doc_id, (image_id, op, []))
            ids.append(row_id)
            merged[doc_id] = (image_id, op, ids)  # the newest row decides the op
        return [
            OutboxEntry(doc_id, image_id, op, tuple(ids)) for doc_id, (image_id, op, ids) in merged.items()
        ]

    def acknowledge(self, entries: list[OutboxEntry]) -> None:
        """The cluster has these documents: drop their rows, and older rejections of the same docs."""
        if not entries:
            return
        row_ids = [r for e in entries for r in e.row_ids]
        with self.catalog.transaction() as conn:
            for part in sql_chunks(row_ids):
                conn.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(part))})", part)
            conn.executemany(
                f"DELETE FROM outbox WHERE image_id = ? AND doc_id = ? AND id < ? AND NOT {_NOT_REJECTED}",
                [(e.image_id, e.doc_id, max(e.row_ids)) for e in entries],
            )

    def record_failures(self, failures: list[tuple[OutboxEntry, str, bool]]) -> None:
        """Count a failed attempt on each (entry, error, rejected); rejected ones are set aside."""
        if not failures:
            return
        with self.catalog.transaction() as conn:
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                [((REJECTED_PREFIX if rejected else "") + error[:2000], row_id)
                 for entry, error, rejected in failures for row_id in entry.row_ids],
            )  # fmt: skip

    def pending(self) -> int:
        """Images with changes waiting to be sent (rejected ones not counted)."""
        return self.catalog.conn.execute(
            f"SELECT COUNT(DISTINCT image_id) FROM outbox WHERE {_NOT_REJECTED}"
        ).fetchone()[0]

    def rejected(self, limit: int | None = 20) -> list[Rejection]:
        sql = f"""SELECT o.doc_id, o.image_id, i.path, o.last_error, MAX(o.attempts) FROM outbox o
                  LEFT JOIN images i ON i.id = o.image_id WHERE NOT {_NOT_REJECTED}
                  GROUP BY o.doc_id ORDER BY MIN(o.id)"""
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [
            Rejection(doc_id, image_id, path, error[len(REJECTED_PREFIX) :], attempts)
            for doc_id, image_id, path, error, attempts in self.catalog.conn.execute(sql)
        ]

    def rejected_count(self) -> int:
        return self.catalog.conn.execute(
            f"SELECT COUNT(DISTINCT doc_id) FROM outbox WHERE NOT {_NOT_REJECTED}"
        ).fetchone()[0]

    def retry_rejected(self) -> int:
        with self.catalog.transaction() as conn:
            return conn.execute(f"UPDATE outbox SET last_error = NULL WHERE NOT {_NOT_REJECTED}").rowcount

    def enqueue_everything(self, model_key: str) -> int:
        """Queue an upsert of every image with a vector of `model_key` (a full re-push).

        Queued upserts (and rejections) are replaced; queued deletes stay.
        """
        now = time.time()
        catalog = self.catalog
        with catalog.transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE op = 'upsert'")
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT image_id FROM embeddings WHERE model_key = ? ORDER BY image_id", (model_key,)
                )
            ]
            conn.executemany(
                "INSERT INTO outbox(op, image_id, doc_id, enqueued_at) VALUES ('upsert', ?, ?, ?)",
                [(i, catalog.doc_id(i), now) for i in ids],
            )
        return len(ids)

    def enqueue_deletes(self, docs: list[tuple[str, int]]) -> None:
        """Queue deletes of remote documents (doc id, image id) the library no longer has."""
        now = time.time()
        with self.catalog.transaction() as conn:
            conn.executemany(
                "INSERT INTO outbox(op, image_id, doc_id, enqueued_at) VALUES ('delete', ?, ?, ?)",
                [(image_id, doc_id, now) for doc_id, image_id in docs],
            )


# --- sync state in meta ----------------------------------------------------------------------

_STATE_KEYS = ("sync_last_success", "sync_last_error", "sync_last_error_at", "sync_index")


@dataclass(frozen=True)
class SyncState:
    last_success: float | None
    last_error: str | None
    last_error_at: float | None
    # "<urls>|<index>|<index uuid>" of the last index we pushed to: when it changes (another
    # cluster or index, or the index was deleted and created again), everything is pushed again.
    index: str | None

    @classmethod
    def load(cls, catalog: Catalog) -> SyncState:
        values = {key: catalog.meta(key) for key in _STATE_KEYS}
        return cls(
            _float(values["sync_last_success"]), values["sync_last_error"] or None,
            _float(values["sync_last_error_at"]), values["sync_index"],
        )  # fmt: skip


def record_success(catalog: Catalog) -> None:
    catalog.set_meta("sync_last_success", repr(time.time()))


def record_error(catalog: Catalog, message: str) -> None:
    with catalog.transaction():
        catalog.set_meta("sync_last_error", message[:2000])
        catalog.set_meta("sync_last_error_at", repr(time.time()))


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
