"""Syncer: push the outbox to the remote index with _bulk, in byte-sized batches.

One sync at a time per library (a file lock beside the catalog), so two processes never
race on one document. The catalog is only touched in short transactions between requests:
a slow or unreachable cluster never holds up indexing or search.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from visualfinder.catalog.outbox import Outbox, Rejection, SyncState, record_error, record_success
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import Cancelled, LibraryBusyError, RemoteError, RemoteUnavailableError
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.remote.documents import bulk_items, pack
from visualfinder.remote.mapping import RemoteSpec
from visualfinder.remote.opensearch import RemoteCluster, RemoteIndexInfo

log = logging.getLogger(__name__)

SYNC_LOCK_FILE = "sync.lock"


@dataclass
class SyncReport:
    """What one sync did. `rejected` documents were refused by the cluster and are set aside."""

    sent: int = 0  # documents indexed
    deleted: int = 0  # documents deleted
    rejected: list[Rejection] = field(default_factory=list)
    pending: int = 0  # left in the outbox (after an error or cancel)
    full: bool = False
    created_index: bool = False
    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    def summary(self) -> str:
        parts = [f"{self.sent} documents sent", f"{self.deleted} deleted"]
        if self.rejected:
            parts.append(f"{len(self.rejected)} rejected")
        if self.pending:
            parts.append(f"{self.pending} still pending")
        return ", ".join(parts)


@dataclass(frozen=True)
class SyncStatus:
    """`visualfinder sync --status`: where the library syncs to and how far behind it is."""

    configured: bool
    enabled: bool  # the catalog records changes in its outbox
    urls: list[str]
    index: str
    user: str
    pending: int
    rejected: list[Rejection]
    rejected_count: int
    last_success: float | None
    last_error: str | None
    last_error_at: float | None

    def to_json(self) -> dict:
        return {
            "configured": self.configured, "enabled": self.enabled, "urls": self.urls, "index": self.index,
            "user": self.user or None, "pending": self.pending, "rejected": self.rejected_count,
            "rejected_documents": [{"doc_id": r.doc_id, "path": r.path, "error": r.error} for r in self.rejected],
            "last_success": self.last_success, "last_error": self.last_error, "last_error_at": self.last_error_at,
        }  # fmt: skip


def remote_spec(settings: Settings, dimension: int, metric: str, model_key: str) -> RemoteSpec:
    """The remote index's shape: the library's vectors, and the local HNSW build parameters."""
    return RemoteSpec(dimension, metric, model_key, m=settings.hnsw_connectivity,
                      ef_construction=settings.hnsw_expansion_add)  # fmt: skip


class Syncer:
    """Drains one catalog's outbox into one remote index."""

    def __init__(self, catalog: Catalog, cluster: RemoteCluster, spec: RemoteSpec, settings: Settings):
        self.catalog = catalog
        self.cluster = cluster
        self.spec = spec
        self.settings = settings
        self.outbox = Outbox(catalog)
        self._lock = FileLock(str(Path(catalog.path).parent / SYNC_LOCK_FILE))
        self._index: RemoteIndexInfo | None = None

    def run(
        self,
        *,
        full: bool = False,
        recreate: bool = False,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        wait_lock: float = 10.0,
    ) -> SyncReport:
        """Make sure the index exists and matches, then send every pending change.

        Raises RemoteUnavailableError (pending changes stay queued), RemoteMismatchError,
        RemoteAuthError, or LibraryBusyError when another sync holds the lock.
        """
        started = time.perf_counter()
        report = SyncReport(full=full or recreate)
        try:
            self._lock.acquire(timeout=wait_lock)
        except Timeout as exc:
            raise LibraryBusyError(
                "another visualfinder process is syncing this library; try again when it has finished"
            ) from exc
        try:
            progress(Progress("connecting", 0, 0))
            self._prepare(report, recreate, cancel)
            self._drain(report, progress, cancel)
            record_success(self.catalog)
        except Cancelled:
            report.cancelled = True
        except RemoteError as exc:
            if isinstance(exc, RemoteUnavailableError):
                self._index = None  # the index may be recreated while the cluster is away: check again
            record_error(self.catalog, str(exc))
            raise
        finally:
            self._lock.release()
            report.pending = self.outbox.pending()
            report.seconds = time.perf_counter() - started
        return report

    def _prepare(self, report: SyncReport, recreate: bool, cancel: CancelToken | None) -> None:
        """Check or create the index; decide whether everything must be pushed again."""
        if self._index is None or recreate:
            self._index = self.cluster.ensure_index(self.spec, recreate=recreate, cancel=cancel)
        info = self._index
        report.created_index = info.created
        # The index's identity: its uuid changes when it is deleted and created again (a lost
        # index), and differs on another cluster; then everything is pushed again.
        identity = info.uuid or f"{','.join(self.cluster.urls)}|{info.name}"
        first = not self.catalog.outbox_enabled
        previous = SyncState.load(self.catalog).index
        if not (first or report.full or info.created or previous != identity):
            return
        why = ("first sync" if first else "asked for" if report.full else "new remote index" if info.created
               else "another remote index")  # fmt: skip
        report.full = True
        with self.catalog.transaction():
            # The outbox records every change from here on; everything before is queued now.
            self.catalog.enable_outbox()
            count = self.outbox.enqueue_everything(self.spec.model_key)
            self.catalog.set_meta("sync_index", identity)
        log.info("full sync (%s): %d images queued", why, count)
        if not info.created:
            self._queue_stale_deletes()

    def _queue_stale_deletes(self) -> None:
        """Queue deletes of this library's remote documents for images it no longer has."""
        wanted = set(self.catalog.embedded_ids(self.spec.model_key).tolist())
        stale = [
            (d, i) for d, i in self.cluster.iter_library_docs(self.catalog.library_id) if i not in wanted
        ]
        if stale:
            log.info("%d remote documents are gone from the library; deleting them", len(stale))
            self.outbox.enqueue_deletes(stale)

    def _drain(self, report: SyncReport, progress: ProgressCallback, cancel: CancelToken | None) -> None:
        s = self.settings
        total = self.outbox.pending()
        done = 0
        after = 0
        rejected_ids: set[str] = set()
        progress(Progress("syncing", 0, total))
        while True:
            if cancel is not None:
                cancel.raise_if_cancelled()
            entries = self.outbox.next_batch(after, s.remote_bulk_max_docs)
            if not entries:
                if rejected_ids:
                    report.rejected = [r for r in self.outbox.rejected(None) if r.doc_id in rejected_ids]
                return
            after = max(r for e in entries for r in e.row_ids)
            items = bulk_items(self.catalog, entries, self.cluster.index, self.spec.model_key)
            for batch in pack(items, s.remote_bulk_max_bytes, s.remote_bulk_max_docs):
                outcomes = self.cluster.bulk(batch, cancel)
                report.requests += 1
                report.bytes += sum(len(item.lines) for item in batch)
                acked = [item.key for item, o in zip(batch, outcomes, strict=True) if o.ok]
                self.outbox.acknowledge(acked)
                report.deleted += sum(
                    1 for item, o in zip(batch, outcomes, strict=True) if o.ok and item.op == "delete"
                )
                report.sent += sum(
                    1 for item, o in zip(batch, outcomes, strict=True) if o.ok and item.op == "index"
                )
                failures = [(o.key, o.error or "", o.rejected) for o in outcomes if not o.ok]
                self.outbox.record_failures(failures)
                for entry, error, rejected in failures:
                    if rejected:
                        log.warning("OpenSearch rejected %s: %s", entry.doc_id, error)
                        rejected_ids.add(entry.doc_id)
                transient = [f for f in failures if not f[2]]
                if transient:
                    raise RemoteUnavailableError(
                        f"OpenSearch at {', '.join(self.cluster.urls)} kept refusing {len(transient)} documents "
                        f"for now ({transient[0][1]})"
                    )
                done += len(batch)
                progress(Progress("syncing", done, max(total, done)))
