"""The folder watcher: keeps watched catalog folders indexed while the app (or `visualfinder
watch`) runs, and catches up on what changed while it did not.

    watcher = Watcher(library)   # follows library.watched_folders(); or Watcher(library, [paths])
    watcher.start()              # returns at once; the work happens on one background thread
    watcher.running, watcher.state, watcher.message, watcher.folders
    watcher.stop()               # stops after the batch in flight (committed whole) and joins

It reports on `library.events` (listeners run on the watcher's thread):
`WatcherStatus(state, message, folders)` when its state changes, `JobProgress(progress,
"watcher")` during a batch, and `LibraryChanged(report, "watcher")` after a batch that changed
the library. Stop the watcher before closing the library.

How it works. On start the watched folders are scheduled with watchdog (inotify, FSEvents or
ReadDirectoryChanges; a polling observer for network drives or when notifications fail, see
`Settings.watch_polling`), then reconciled by the same stat diff `Library.index` does, so
changes made while nothing watched are applied first. Events only name paths: a path is
queued, and a burst is taken as one batch once no event came for `watch_debounce_s` (or after
`watch_max_delay_s` during an endless stream). A file is read only when the watcher has seen
its size and mtime hold still for `watch_stable_s` (never trusting an old-looking mtime: a
share's clock may lag); one still being written waits. Each batch goes through
`Library.index_paths`: the one indexing pipeline, under the library's writer lock, so a move
(both ends in one batch, or a vanished source) keeps its id and metadata, a deleted file or
folder leaves the library, and every change reaches the outbox in the catalog transaction.
A watched folder that disappears (unmounted drive) keeps its images and is reconciled when it
comes back; an inotify queue overflow or watch limit makes the watcher rescan or poll.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from visualfinder.errors import FolderNotFoundError, LibraryBusyError, VisualFinderError
from visualfinder.events import JobProgress, LibraryChanged, WatcherStatus
from visualfinder.ingest import watchfs
from visualfinder.ingest.imaging import is_candidate_name, is_ignored_name
from visualfinder.ingest.pipeline import IndexReport
from visualfinder.ingest.retry import TRANSIENT
from visualfinder.ingest.scanner import FileStat
from visualfinder.ingest.watch_roots import WatchedRoots
from visualfinder.jobs import CancelToken, Progress
from visualfinder.paths import is_within, normalise
from visualfinder.products.importer import is_sidecar_name

log = logging.getLogger(__name__)

_IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})
_MAX_RETRY_DELAY_S = 60.0
# A file skipped for a transient reason is looked at again when its backoff ends (no file event
# will name it), but never sooner than this after the last look: a stalled share must not cost
# one time limit after another.
_SKIP_RETRY_SPACING_S = 5.0


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher):
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher._on_fs_event(event)


class Watcher:
    """Keeps the library in step with its watched folders; see the module docstring."""

    def __init__(
        self, library, folders: Sequence[str | os.PathLike] | None = None, *, reconcile: bool = True
    ):
        self.library = library
        self.settings = library.settings
        self._requested = None if folders is None else [normalise(f) for f in folders]
        self._reconcile_on_start = reconcile
        self._handler = _Handler(self)
        self._cond = threading.Condition()
        self._pending: dict[str, float] = {}  # path -> monotonic time of its last event
        self._deferred: dict[str, float] = {}  # path still being written -> when to look again
        self._unstable: dict[str, tuple[tuple[int, int], float]] = {}  # path -> (size, mtime), since
        self._held_since: dict[str, float] = {}  # deferred path -> when it was first held back
        self._last_event = 0.0
        self._oldest = math.inf  # no pending path has an older event than this
        self._roots = WatchedRoots(library.catalog, self.settings, self._handler)
        self._data_dir = os.path.abspath(library.data_dir)
        self._flags = {"refresh": False, "check": False, "new_dirs": False}
        self._rewatch: set[str] = set()  # roots to schedule again (a folder's permissions changed)
        self._next_check = 0.0
        self._next_skip_retry = math.inf  # wall clock: when transient skips are next looked at
        self._working = False
        self._ready = False
        self._stop = threading.Event()
        self._cancel = CancelToken()
        self._thread: threading.Thread | None = None
        self._overflow = watchfs.OverflowSignal()
        self._overflows_seen = 0
        self._problem: tuple[str, str] | None = None  # ("busy" | "error", message) of the last batch
        self._failures = 0
        self._unsubscribe = None
        self.state = "stopped"
        self.message = ""
        self._published_folders: tuple[tuple[str, str], ...] = ()
        if self._requested is not None:
            registered = [f.path for f in library.folders()]
            for path in self._requested:
                if not any(is_within(path, folder) for folder in registered):
                    raise FolderNotFoundError(
                        f"not a catalog folder: {path} (add it with: visualfinder index PATH)"
                    )

    # --- public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Start watching on a background thread (returns at once)."""
        if self.running:
            raise RuntimeError("the watcher is already running")
        self._stop.clear()
        self._cancel = CancelToken()
        self._ready = False
        self._roots = WatchedRoots(self.library.catalog, self.settings, self._handler)
        self._next_check, self._problem, self._failures = 0.0, None, 0
        self._set_state("starting", "setting up folder watches")
        self._thread = threading.Thread(target=self._run, name="vf-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 60.0) -> bool:
        """Stop watching: the batch in flight ends at its next commit; True once joined."""
        self._stop.set()
        self._cancel.cancel()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def folders(self) -> dict[str, str]:
        """Each watched folder and how: 'watching', 'polling' or 'missing'."""
        return self._roots.folders()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until set up and no change is queued, waiting or being indexed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._working or self._pending or self._deferred or not self._ready:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the watcher thread --------------------------------------------------------------

    def _run(self) -> None:
        self._overflow.install()
        self._unsubscribe = self.library.events.subscribe(self._on_library_event)
        try:
            fresh = self._roots.sync(self._desired_roots())
            if self._reconcile_on_start:
                self._reconcile(fresh)
            self._next_skip_retry = time.time() + _SKIP_RETRY_SPACING_S
            with self._cond:
                self._ready = True
                self._cond.notify_all()
            self._publish_state()
            while not self._stop.is_set():
                self._maintain()
                batch = self._take_batch()
                if batch:
                    self._process(batch)
        except Exception as exc:  # a bug: say so rather than die silently
            log.exception("the folder watcher stopped")
            self._set_state("error", f"the folder watcher stopped: {exc}")
        finally:
            self._teardown()

    def _take_batch(self) -> list[str]:
        """The paths due for indexing now, or [] after waiting for the next thing to do."""
        s = self.settings
        with self._cond:
            now = time.monotonic()
            if self._deferred and min(self._deferred.values()) <= now:
                for path, due in list(self._deferred.items()):
                    if due <= now:
                        del self._deferred[path]
                        self._pending.setdefault(path, now - s.watch_debounce_s)
                        self._oldest = min(self._oldest, now - s.watch_debounce_s)
            wake = [self._next_check, now + max(0.0, self._next_skip_retry - time.time())]
            if self._pending:
                oldest = self._oldest  # a lower bound: exact after each cut
                quiet = now - self._last_event >= s.watch_debounce_s
                forced = now - oldest >= s.watch_max_delay_s + s.watch_debounce_s
                if quiet or forced:
                    ready = [p for p, t in self._pending.items() if now - t >= s.watch_debounce_s]
                    for path in ready:
                        del self._pending[path]
                    self._oldest = min(self._pending.values(), default=math.inf)
                    if ready:
                        self._working = True
                        return ready
                    wake.append(self._oldest + s.watch_debounce_s)
                else:
                    wake += [self._last_event + s.watch_debounce_s,
                             oldest + s.watch_max_delay_s + s.watch_debounce_s]  # fmt: skip
            if self._deferred:
                wake.append(min(self._deferred.values()))
            if not self._stop.is_set() and not any(self._flags.values()) and not self._rewatch:
                self._cond.wait(max(0.0, min(wake) - now))
            return []

    def _process(self, paths: list[str], what: str = "batch") -> IndexReport | None:
        """Run one batch through the library's pipeline; what fails or must wait is retried."""
        now = time.monotonic()
        with self._cond:
            more_waiting = bool(self._pending or self._deferred)
            # Removals wait for files still being written (they may be where a file went), but
            # not forever: a file rewritten without pause must not pin a deletion.
            hold = all(now - self._held_since.get(p, now) < self.settings.watch_max_delay_s for p in paths)
        try:
            report = self.library.index_paths(paths, accept=self._accept, progress=self._progress,
                                              cancel=self._cancel, source="watcher", save_index=not more_waiting,
                                              wait=1.0, hold_removals=hold)  # fmt: skip
        except LibraryBusyError as exc:
            self._retry(paths, "busy", str(exc))
            return None
        except VisualFinderError as exc:
            self._retry(paths, "error", str(exc))
            return None
        except Exception as exc:
            log.exception("indexing %d changed paths failed", len(paths))
            self._retry(paths, "error", f"indexing changes failed: {exc}")
            return None
        finally:
            with self._cond:
                self._working = False
                self._cond.notify_all()
        self._defer(report.deferred, paths)
        if any(error.kind == TRANSIENT for error in report.errors):
            self._next_skip_retry = min(self._next_skip_retry, time.time() + _SKIP_RETRY_SPACING_S)
        self._failures = 0
        if self._problem is not None:
            self._problem = None
            self._publish_state()
        if report.changed or report.metadata_updated:
            log.info("watcher %s: %s (%.1fs)", what, report.summary(), report.seconds)
        return report

    def _defer(self, deferred: list[str], processed: list[str] = ()) -> None:
        """Look again at held-back paths once their files may have held still long enough.

        A processed path that was not held back starts afresh: an event that named it again
        while its batch ran must not inherit the time it was held before (its removal would no
        longer wait for a file being written, and a rename would become a removal and an addition).
        """
        now = time.monotonic()
        stable_s = self.settings.watch_stable_s
        with self._cond:
            for path in set(processed).difference(deferred):
                self._held_since.pop(path, None)
                self._unstable.pop(path, None)
            # One time for the whole batch, so that files that arrived together (a folder moved
            # in) are indexed together: the last one to be seen decides.
            due = max([now + stable_s if (seen := self._unstable.get(p)) is None else max(now, seen[1] + stable_s)
                       for p in deferred], default=now)  # fmt: skip
            for path in deferred:
                self._held_since.setdefault(path, now)
                if path not in self._pending:
                    self._deferred[path] = due
            waiting = self._pending.keys() | self._deferred.keys()
            self._unstable = {p: v for p, v in self._unstable.items() if p in waiting}
            self._held_since = {p: t for p, t in self._held_since.items() if p in waiting}
            self._cond.notify_all()

    def _retry(self, paths: list[str], kind: str, message: str) -> None:
        """Keep the paths for later: nothing is lost while the library is busy or failing."""
        self._failures += 1
        delay = min(_MAX_RETRY_DELAY_S, 0.5 * 2.0 ** min(self._failures, 7))
        log.warning("watcher: %s; retrying %d changed paths in %.0fs", message, len(paths), delay)
        due = time.monotonic() + delay
        with self._cond:
            for path in paths:
                if path not in self._pending:
                    self._deferred[path] = due
        self._problem = (kind, message)
        self._publish_state()

    def _accept(self, stat: FileStat) -> bool:
        """Whether a new or changed file has held still (size, mtime) long enough to be read.

        Always by our own observation: an old-looking mtime proves nothing on a share whose
        clock lags ours, where a half-written file would be read at once.
        """
        stable_s = self.settings.watch_stable_s
        if stat.problem or stable_s <= 0:
            return True
        now = time.monotonic()
        key = (stat.size, stat.mtime_ns)
        with self._cond:
            seen = self._unstable.get(stat.path)
            if seen is not None and seen[0] == key and now - seen[1] >= stable_s:
                return True
            if seen is None or seen[0] != key:
                self._unstable[stat.path] = (key, now)
        return False

    def _progress(self, progress: Progress) -> None:
        self.library.events.emit(JobProgress(progress, "watcher"))

    # --- events from watchdog (observer threads) -----------------------------------------

    def _on_fs_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in _IGNORED_EVENTS or (event.is_directory and kind == "modified"):
            return
        paths = [event.src_path]
        if kind == "moved" and event.dest_path:
            paths.append(event.dest_path)
        roots = self._roots.paths
        logical = [self._roots.logical(os.fsdecode(raw)) for raw in paths]
        root_gone = kind in ("deleted", "moved") and any(path in roots for path in logical)
        relevant = [p for p in logical if p not in roots and self._relevant(p, event.is_directory)]
        rewatch = None
        if event.is_directory and kind == "attrib":
            # Permissions may have changed: a folder that could not be watched now can be.
            rewatch = next((r for r in roots if is_within(logical[0], r)), None)
        now = time.monotonic()
        with self._cond:
            # The watcher thread sleeps until its next deadline; it needs waking only when there
            # was nothing to do (a burst of 5,000 files must not wake it 5,000 times).
            wake = not self._pending or root_gone or rewatch is not None
            for path in relevant:
                self._pending[path] = now
                self._deferred.pop(path, None)
                self._last_event = now
                self._oldest = min(self._oldest, now)
            if root_gone:
                self._flags["check"] = True  # the watched folder itself went away
            if event.is_directory and kind in ("created", "moved") and not self._flags["new_dirs"]:
                self._flags["new_dirs"] = wake = True
            if rewatch is not None:
                self._rewatch.add(rewatch)
            if wake and (relevant or root_gone or rewatch is not None or self._flags["new_dirs"]):
                self._cond.notify_all()

    def _relevant(self, path: str, is_directory: bool) -> bool:
        root = self._roots.root_of(path)
        if root is None or is_within(path, self._data_dir):
            return False  # the library's own thumbnails are never catalogued
        parts = os.path.relpath(path, root).split(os.sep)
        if any(is_ignored_name(part) for part in parts):
            return False  # hidden, temporary and partial names, or inside such a folder
        return is_directory or is_candidate_name(parts[-1]) or is_sidecar_name(parts[-1])

    def _on_library_event(self, event: object) -> None:
        if isinstance(event, LibraryChanged) and event.source in ("folders", "index"):
            with self._cond:
                self._flags["refresh"] = True  # folders may have been added, removed or (un)watched
                self._cond.notify_all()

    # --- watched folders -----------------------------------------------------------------

    def _maintain(self) -> None:
        """Between batches: follow folder changes, check folders, recover lost events."""
        now = time.monotonic()
        with self._cond:
            flags, self._flags = self._flags, {"refresh": False, "check": False, "new_dirs": False}
            rewatch, self._rewatch = self._rewatch, set()
        due = now >= self._next_check
        catch_up: list[str] = []
        if due or flags["refresh"]:
            catch_up += self._roots.sync(self._desired_roots())
        if due or flags["check"]:
            catch_up += self._roots.check()
        if flags["new_dirs"]:
            catch_up += self._roots.check_budget()  # new subfolders in unwatched ones were missed
        if rewatch:
            catch_up += self._roots.rewatch(rewatch)
        if self._overflow.count != self._overflows_seen:
            self._overflows_seen = self._overflow.count
            watched = self._roots.watching()
            log.warning("file change notifications were lost (inotify queue overflow); rescanning %s",
                        ", ".join(watched))  # fmt: skip
            catch_up += watched
        self._reconcile(list(dict.fromkeys(catch_up)))
        if time.time() >= self._next_skip_retry:
            self._queue_due_skips()
        self._publish_state()
        if due:
            self._next_check = time.monotonic() + self.settings.watch_check_interval_s

    def _queue_due_skips(self) -> None:
        """Queue the transient skips in watched folders whose backoff has ended."""
        now = time.time()
        present = [path for path, mode in self._roots.folders().items() if mode != "missing"]
        due, later = [], math.inf
        for path, retry_at in self.library.catalog.transient_retries():
            # Never in a missing folder: its files are kept, and a queued path would read as gone.
            if not any(is_within(path, root) for root in present):
                continue
            if retry_at is None or retry_at <= now:
                due.append(path)
            else:
                later = min(later, retry_at)
        self._next_skip_retry = max(later if not due else now, now + _SKIP_RETRY_SPACING_S)
        if not due:
            return
        log.info("watcher: trying %s again", _count(len(due), "skipped file"))
        queued_at = time.monotonic() - self.settings.watch_debounce_s  # due now: no debounce
        with self._cond:
            for path in due:
                self._pending.setdefault(path, queued_at)
            self._oldest = min(self._oldest, queued_at)

    def _desired_roots(self) -> list[str]:
        paths = (
            self._requested
            if self._requested is not None
            else [f.path for f in self.library.watched_folders()]
        )
        outer: list[str] = []
        for path in sorted(set(paths), key=len):
            if not any(is_within(path, kept) for kept in outer):
                outer.append(path)
        return outer

    def _reconcile(self, paths: list[str]) -> None:
        """Apply what changed in these folders while they were not watched (a stat diff)."""
        if not paths:
            return
        with self._cond:
            self._working = True
        log.info("reconciling %s", ", ".join(paths))
        if not self._ready:
            self._set_state(
                "starting", f"catching up with changes made while not watched: {', '.join(paths)}"
            )
        self._process(list(paths), what="reconcile")

    # --- state ---------------------------------------------------------------------------

    def _publish_state(self) -> None:
        roots = self._roots.all()
        if not self._ready and not self._stop.is_set():
            return  # still starting: one 'watching' follows the setup
        if self._problem is not None:
            state, message = self._problem
        elif not roots:
            state, message = "watching", "no folders are watched"
        elif missing := [r for r in roots if r.mode == "missing"]:
            state = "folder-missing"
            message = "; ".join(f"{r.path}: {r.reason}" for r in missing) + (
                " (its images are kept; it is watched again when it comes back)"
            )
        elif polling := [r for r in roots if r.mode == "polling"]:
            state = "polling"
            message = "; ".join(f"polling {r.path}: {r.reason}" for r in polling)
        else:
            state, message = "watching", f"watching {_count(len(roots), 'folder')}"
        self._set_state(state, message)

    def _set_state(self, state: str, message: str) -> None:
        folders = tuple((r.path, r.mode) for r in self._roots.all())
        if (state, message, folders) == (self.state, self.message, self._published_folders):
            return
        self.state, self.message, self._published_folders = state, message, folders
        self.library.events.emit(WatcherStatus(state, message, folders))

    def _teardown(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._roots.close()
        self._overflow.uninstall()
        try:
            self.library.save_index()
        except VisualFinderError as exc:
            log.warning("the vector index was not saved on stop: %s", exc)
        with self._cond:
            self._working = False
            self._cond.notify_all()
        self._set_state("stopped", "the folder watcher is stopped")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
