"""LibrarySession: the GUI's handle on one open `library.facade.Library`, and the only place that calls it.

Every call runs as a Job on one of the session's queues, never on the GUI thread:
- `writer`: open/close, indexing, folder and tag changes, one at a time (they never race);
- `reader`: searches, query decoding, status and export; reads are safe next to the writer
  (SQLite WAL, one connection per thread; the vector index has its own lock), so a query
  answers while a folder is being indexed;
- `background`: loading (downloading) the model, which may take minutes and must block neither;
- `review`: long reads the user reviews in their own window (duplicates, batch match), so that
  searches in the main window never wait behind them.
- `remote`: talking to the OpenSearch cluster (test, sync now), which may wait on the network.
The folder watcher (`watcher.Watcher`) runs on its own thread while the library is open and
goes through the library's writer lock like any indexing run; it is stopped before the
library closes.
Opening and closing take the library exclusively (a shared/exclusive lock), so no job ever sees
a library that is being closed. Library events (from indexing runs and the watcher, on worker
threads) come back as Qt signals on the GUI thread.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from visualfinder.config import Settings
from visualfinder.errors import Cancelled
from visualfinder.events import JobProgress, LibraryChanged, SyncStatusChanged, WatcherStatus
from visualfinder.gui.workers import Job, JobContext, JobQueue
from visualfinder.ingest.watcher import Watcher
from visualfinder.jobs import Progress
from visualfinder.library.batch import BatchReport, PhotoMatches
from visualfinder.library.duplicates import TrashReport
from visualfinder.library.facade import Library, LibraryStatus, open_library
from visualfinder.remote.worker import SyncWorker, start_live_sync
from visualfinder.search.duplicates import DuplicateGroup, DuplicateReport
from visualfinder.search.planner import SearchResult
from visualfinder.search.request import SearchRequest, SearchResponse

log = logging.getLogger(__name__)

STATUS_ERROR_LIMIT = 500


@dataclass
class Snapshot:
    """What the window shows about the library: counts, folders, tags, model and device."""

    status: LibraryStatus
    device: str  # the resolved device (auto -> cpu/cuda/mps)
    tags: list[tuple[str, int]] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)  # metadata fields the query bar accepts

    @property
    def model_differs(self) -> bool:
        """The settings ask for another model than the one the library's vectors come from."""
        status = self.status
        return bool(status.requested_model_key) and status.requested_model_key != status.model_key

    @property
    def images(self) -> int:
        return self.status.stats.ok

    @property
    def is_empty(self) -> bool:
        return self.status.stats.images == 0


class SharedLock:
    """Many shared holders or one exclusive holder (a small readers-writer lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self):
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def freeze_long_lived() -> None:
    """Put every object alive now (modules, Qt wrappers, the model's weights, the open library)
    out of the garbage collector's reach (gc.freeze): its full passes then walk only the objects
    made since. Otherwise a job that makes many objects (thousands of duplicate groups arriving)
    triggers a full pass over the whole heap on whatever thread it runs, holding the GIL: 785 ms
    with 430k objects on a busy 2-core machine, the GUI thread waiting throughout. Frozen objects
    are still freed when their last reference goes; only reference cycles among them stay."""
    gc.freeze()


class LibrarySession(QObject):
    """Owns the Library, its job queues and the bridge from library events to Qt signals."""

    opened = Signal(object)  # Library
    openFailed = Signal(str)
    closed = Signal()
    snapshotChanged = Signal(object)  # Snapshot
    libraryChanged = Signal(object)  # events.LibraryChanged
    externalProgress = Signal(object)  # events.JobProgress (the watcher's batches)
    watcherStatus = Signal(object)  # events.WatcherStatus
    syncStatus = Signal(object)  # events.SyncStatusChanged (continuous sync to OpenSearch)
    jobSubmitted = Signal(object)  # Job: the window shows progress for the long ones
    _event = Signal(object)  # from worker threads; re-emitted on the GUI thread

    def __init__(self, settings: Settings, parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings
        self.writer = JobQueue("writer", self)
        self.reader = JobQueue("reader", self)
        self.background = JobQueue("model", self)
        self.review = JobQueue("review", self)
        self.remote = JobQueue("remote", self)
        self._lock = SharedLock()
        self._library: Library | None = None
        self._watcher: Watcher | None = None
        self._sync: SyncWorker | None = None
        self.watch = True  # run the folder watcher while the library is open
        self._unsubscribe: Callable[[], None] | None = None
        self.state = "closed"  # closed, opening, open, failed, closing, shut
        self.snapshot: Snapshot | None = None
        self._event.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        self._refresh_timer = QTimer(self, singleShot=True, interval=250)
        self._refresh_timer.timeout.connect(self.refresh)

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def library(self) -> Library | None:
        """The open library, for reading plain attributes (settings, metric) on the GUI thread."""
        return self._library

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def open(self, settings: Settings | None = None) -> Job:
        """Open the library (or reopen it with new settings, which are saved first)."""
        new_settings = settings or self.settings
        save = settings is not None
        self.state = "opening"

        def run(ctx: JobContext) -> Library:
            with self._lock.exclusive():
                self._close_library()
                if save:
                    new_settings.save()
                library = open_library(new_settings, ctx.progress)
                self._library = library
                self._unsubscribe = library.events.subscribe(self._event.emit)
                if self.watch:
                    self._start_watcher(library)
                self._sync = start_live_sync(library)
                return library

        job = Job("Opening the library", run)
        job.succeeded.connect(lambda library: self._on_opened(library, new_settings))
        job.failed.connect(self._on_open_failed)
        return self._submit(self.writer, job)

    def _on_opened(self, library: Library, settings: Settings) -> None:
        freeze_long_lived()
        self.settings = settings
        self.state = "open"
        self.opened.emit(library)
        self.refresh()

    def _on_open_failed(self, message: str) -> None:
        self.state = "failed"
        self.openFailed.emit(message)

    def shutdown(self) -> None:
        """Stop every job, close the library (saving the index) on the writer, then emit `closed`.

        Returns at once; the GUI thread never waits for a job."""
        if self.state in ("closing", "shut"):
            return
        self.state = "closing"
        self._refresh_timer.stop()
        for queue in (self.reader, self.review, self.background, self.remote, self.writer):
            queue.cancel_all()

        def run(ctx: JobContext) -> None:
            with self._lock.exclusive():
                self._close_library()

        job = Job("Closing the library", run)
        job.finished.connect(self._on_closed)
        self.writer.submit(job)

    def _on_closed(self) -> None:
        # The writer and reader are idle now (the close job held the library exclusively);
        # a model download cannot be interrupted, so its thread is left behind, not waited on.
        self.writer.shutdown()
        self.reader.shutdown()
        self.review.shutdown()
        self.remote.shutdown()
        self.background.shutdown(timeout=0.2)
        self.state = "shut"
        self.closed.emit()

    def left_behind(self) -> bool:
        """After shutdown: a job that could not be interrupted (a download) still runs."""
        return any(q.alive for q in (self.writer, self.reader, self.review, self.background, self.remote))

    # --- the folder watcher --------------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watcher is not None and self._watcher.running

    def set_watching(self, on: bool) -> Job | None:
        """Start or stop the folder watcher (it follows the folders ticked Watch)."""
        self.watch = on
        if not self.is_open or on == self.watching:
            return None

        def run(ctx: JobContext) -> bool:
            with self._lock.shared():
                if on and self._library is not None:
                    self._start_watcher(self._library)
                else:
                    self._stop_watcher()
            return on

        return self._submit(self.writer, Job("Starting the watcher" if on else "Stopping the watcher", run))

    def _start_watcher(self, library: Library) -> None:
        if self._watcher is None or not self._watcher.running:
            self._watcher = Watcher(library)
            self._watcher.start()

    def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.stop(timeout=60):
            log.warning("the folder watcher did not stop within a minute; closing anyway")

    def _close_library(self) -> None:
        """On a worker, holding the library exclusively."""
        self._stop_watcher()  # its batch in flight ends at a commit; it must stop before the library
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.stop()  # waits at most for the request in flight (remote_timeout_s)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        library, self._library = self._library, None
        if library is not None:
            library.close()

    # --- jobs ----------------------------------------------------------------------------

    def _submit(self, queue: JobQueue, job: Job) -> Job:
        queue.submit(job)
        self.jobSubmitted.emit(job)
        return job

    def run(
        self,
        queue: JobQueue,
        name: str,
        fn: Callable[[Library, JobContext], Any],
        *,
        key: str | None = None,
        refresh: bool = False,
        needs_model: bool = False,
    ) -> Job:
        """Run `fn(library, ctx)` on `queue`, holding the library shared; `refresh`: then update the snapshot.

        `needs_model`: wait for the model (maybe a first download) before taking the library, so
        closing the window never waits for a download."""

        def run(ctx: JobContext) -> Any:
            if needs_model:
                self._wait_for_model(ctx)
            with self._lock.shared():
                if self._library is None:
                    raise Cancelled("the library is closed")
                return fn(self._library, ctx)

        job = Job(name, run, key=key)
        if refresh:
            job.finished.connect(self.schedule_refresh)
        return self._submit(queue, job)

    def _wait_for_model(self, ctx: JobContext) -> None:
        library = self._library
        if library is not None:
            library.embedder.load()  # lock-guarded: returns at once when loaded
        ctx.cancel.raise_if_cancelled()

    def search(self, request: SearchRequest) -> Job:
        """The newest search wins: one still waiting or running is cancelled."""
        needs_model = any(term.kind != "similar" for term in request.terms)
        return self.run(self.reader, "Searching", lambda lib, ctx: lib.search(request), key="search",
                        needs_model=needs_model)  # fmt: skip

    def index(self, paths: Sequence[str | os.PathLike] | None = None, watched: bool | None = None,
              retry_skipped: bool = False) -> Job:  # fmt: skip
        """Index `paths` (or every folder); `retry_skipped` tries every skipped file again."""

        def run(lib: Library, ctx: JobContext):
            return lib.index(paths, watched=watched, progress=ctx.progress, cancel=ctx.cancel,
                             retry_skipped=retry_skipped)  # fmt: skip

        name = f"Indexing {Path(paths[0]).name}" if paths and len(paths) == 1 else "Indexing"
        return self.run(self.writer, name, run, refresh=True, needs_model=True)

    def remove_folder(self, path: str) -> Job:
        return self.run(
            self.writer, "Removing folder", lambda lib, ctx: lib.remove_folder(path), refresh=True
        )

    def set_watched(self, path: str, watched: bool) -> Job:
        return self.run(
            self.writer, "Changing folder", lambda lib, ctx: lib.set_watched(path, watched), refresh=True
        )

    def edit_tags(self, image_ids: Sequence[int], add: Sequence[str], remove: Sequence[str]) -> Job:
        """Add and remove tags on several images; the result maps image id -> its tags afterwards."""

        def run(lib: Library, ctx: JobContext) -> dict[int, list[str]]:
            tags: dict[int, list[str]] = {}
            for image_id in image_ids:
                if add:
                    tags[image_id] = lib.products.add_tags(image_id, add)
                if remove:
                    tags[image_id] = lib.products.remove_tags(image_id, remove)
            return tags

        return self.run(self.writer, "Saving tags", run, refresh=True)

    def switch_model(self, model: str, pretrained: str) -> Job:
        """Re-embed the library with another model; searches use the current one until it is done.

        Stopping leaves the switch pending: running it again resumes where it stopped."""

        def run(lib: Library, ctx: JobContext):
            return lib.models.switch(model, pretrained, ctx.progress, ctx.cancel)

        return self.run(self.writer, f"Switching to {model}", run, refresh=True)

    def set_metric(self, metric: str) -> Job:
        """Compare images by another metric: the index is rebuilt from stored vectors."""

        def run(lib: Library, ctx: JobContext) -> int:
            return lib.models.set_metric(metric, ctx.progress, ctx.cancel)

        return self.run(self.writer, "Rebuilding the index", run, refresh=True)

    def export_csv(self, results: Sequence[SearchResult], dest: str, excel: bool) -> Job:
        rows = list(results)
        return self.run(self.reader, "Exporting", lambda lib, ctx: lib.export_csv(rows, dest, excel=excel))

    # --- duplicates and batch match (the review windows) -----------------------------------

    def find_duplicates(self, threshold: float | None = None) -> Job:
        """Duplicate groups in three tiers; a new search for them supersedes the one running.
        The groups arrive as the job's `partial` signal (lists of groups) while it runs."""

        def run(lib: Library, ctx: JobContext) -> DuplicateReport:
            return lib.duplicates.find(
                threshold, progress=ctx.progress, cancel=ctx.cancel, on_groups=ctx.partial, in_worker=True
            )

        return self.run(self.review, "Finding duplicates", run, key="duplicates")

    def keep_duplicates(self, paths: Sequence[str], decision: str = "keep_both") -> Job:
        """Keep all of these files: remember that they are not to be grouped again."""
        files = list(paths)
        return self.run(self.writer, "Remembering the decision",
                        lambda lib, ctx: lib.duplicates.mark_not_duplicates(files, decision))  # fmt: skip

    def keep_one(self, keep: str, others: Sequence[str], move_to_trash: Callable[[str], bool]) -> Job:
        """Keep `keep`, move `others` to the system trash; the catalog forgets them."""
        files = list(others)

        def run(lib: Library, ctx: JobContext) -> TrashReport:
            return lib.duplicates.keep_one(keep, files, move_to_trash, ctx.progress, ctx.cancel)

        return self.run(self.writer, "Moving to the trash", run, refresh=True)

    def export_duplicates_csv(self, groups: Sequence[DuplicateGroup], dest: str, excel: bool) -> Job:
        rows = list(groups)
        return self.run(
            self.reader, "Exporting", lambda lib, ctx: lib.duplicates.export_csv(rows, dest, excel)
        )

    def match_folder(self, folder: str, k: int) -> Job:
        """Batch match: the top k catalog matches of each photo in `folder`."""

        def run(lib: Library, ctx: JobContext) -> BatchReport:
            return lib.match_folder(folder, k, progress=ctx.progress, cancel=ctx.cancel)

        return self.run(self.review, "Matching photos", run, key="batch", needs_model=True)

    def export_batch_csv(self, matches: Sequence[PhotoMatches], dest: str, excel: bool) -> Job:
        rows = list(matches)
        return self.run(self.reader, "Exporting", lambda lib, ctx: lib.export_batch_csv(rows, dest, excel))

    # --- product sheets ------------------------------------------------------------------

    def preview_sheet(self, path: str) -> Job:
        """The first rows of a product sheet and the mapping its headers suggest."""
        return self.run(self.reader, "Reading the product sheet",
                        lambda lib, ctx: lib.products.preview_sheet(path), key="sheet-preview")  # fmt: skip

    def import_products(
        self, path: str, mapping, *, replace_tags: bool = False, dry_run: bool = False
    ) -> Job:
        """Import a product sheet by `mapping` (a dry run checks the matches and writes nothing)."""

        def run(lib: Library, ctx: JobContext):
            return lib.products.import_metadata(path, mapping=mapping, replace_tags=replace_tags,
                                                dry_run=dry_run, progress=ctx.progress, cancel=ctx.cancel)  # fmt: skip

        name = "Checking the product sheet" if dry_run else "Importing product data"
        return self.run(self.writer, name, run, refresh=not dry_run)

    def save_import_report(self, report, dest: str) -> Job:
        return self.run(self.reader, "Saving the report",
                        lambda lib, ctx: lib.products.save_import_report(report, dest))  # fmt: skip

    # --- the OpenSearch cluster -----------------------------------------------------------

    def check_remote(self, settings: Settings, password: str | None = None) -> Job:
        """Test `settings`' cluster (saved or not): version, k-NN plugin, mapping (a ConnectionCheck)."""
        return self.run(self.remote, "Testing the connection",
                        lambda lib, ctx: lib.remote.check(settings, password), key="remote-check")  # fmt: skip

    def sync_remote(self, full: bool = False) -> Job:
        """Push the outbox (`full`: every image) to the library's cluster, as `visualfinder sync` does."""

        def run(lib: Library, ctx: JobContext):
            return lib.remote.sync(full=full, progress=ctx.progress, cancel=ctx.cancel)

        return self.run(self.remote, "Full resync" if full else "Syncing", run)

    def remote_status(self) -> Job:
        """The outbox size, rejected documents, last success and last error (a SyncStatus)."""
        return self.run(self.reader, "Reading the sync status", lambda lib, ctx: lib.remote.status(),
                        key="remote-status")  # fmt: skip

    def load_model(self) -> Job:
        """Load (on first use, download) the model ahead of the first query."""

        def run(ctx: JobContext) -> str:
            # Not under the library lock: a first download may take minutes, and closing the
            # library must not wait for it (the embedder does not need the catalog).
            library = self._library
            if library is None:
                raise Cancelled("the library is closed")

            def downloaded(done: int, total: int | None) -> None:
                ctx.progress(Progress("downloading model", done, total or 0))

            # Both towers' sessions open now, so the first query and the first indexed file do not wait.
            library.embedder.load(progress=downloaded).warm()
            return library.embedder.key

        job = Job("Loading the model", run)
        job.succeeded.connect(lambda _: freeze_long_lived())
        return self._submit(self.background, job)

    # --- snapshot and events -------------------------------------------------------------

    def refresh(self) -> Job | None:
        """Re-read counts, folders, tags and errors (on the reader) and emit snapshotChanged."""
        if not self.is_open:
            return None

        def run(lib: Library, ctx: JobContext) -> Snapshot:
            status = lib.status(error_limit=STATUS_ERROR_LIMIT)
            return Snapshot(
                status, lib.embedder.device, lib.products.all_tags(), lib.products.metadata_fields()
            )

        job = self.run(self.reader, "Reading library status", run, key="status")
        job.succeeded.connect(self._on_snapshot)
        return job

    def schedule_refresh(self) -> None:
        """Coalesce bursts of changes (a watcher batch, many tag edits) into one refresh."""
        if self.is_open:
            self._refresh_timer.start()

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.snapshotChanged.emit(snapshot)

    @Slot(object)
    def _on_event(self, event: object) -> None:
        if self.state in ("closing", "shut"):
            return
        if isinstance(event, LibraryChanged):
            self.libraryChanged.emit(event)
            self.schedule_refresh()
        elif isinstance(event, JobProgress):
            self.externalProgress.emit(event)
        elif isinstance(event, WatcherStatus):
            self.watcherStatus.emit(event)
        elif isinstance(event, SyncStatusChanged):
            self.syncStatus.emit(event)


def response_summary(response: SearchResponse) -> str:
    """'20 results in 0.04 s (exact search over 1,234 images)'."""
    n = len(response.results)
    method = "exact search" if response.plan.method == "exact" else "HNSW index"
    if response.plan.where == "remote":
        method += " on OpenSearch"
    return (
        f"{n:,} result{'s' if n != 1 else ''} in {response.seconds:.2f} s "
        f"({method} over {response.plan.candidates:,} images)"
    )
