"""Finding duplicates in a worker process, for the app: the same `Duplicates.find`, run in a
process that opens the library as `visualfinder duplicates` does.

In the app's own process the finder's Python (between the index searches, which release the
GIL) would hold the GIL against the GUI thread, and on a busy machine a thread descheduled while
holding it stalls the window for hundreds of milliseconds. In its own process it stalls nothing.
The process is started on the first search and kept for the next ones (a new threshold, Find
again: they catch up with the catalog as any reader does); groups, progress and the report come
back through a pipe as they are found, and Stop reaches the finder through a shared event. If
the process cannot start or dies, the search runs in this process instead.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from collections.abc import Callable
from typing import Any

from visualfinder.catalog.filters import Filters
from visualfinder.config import Settings
from visualfinder.errors import Cancelled, VisualFinderError
from visualfinder.ingest.process_pool import start_method, without_main_module
from visualfinder.jobs import CancelToken, ProgressCallback, no_progress
from visualfinder.search.duplicates import DuplicateReport, GroupsCallback

log = logging.getLogger(__name__)

_POLL_S = 0.05


class WorkerLost(Exception):
    """The worker process stopped or could not start (the caller runs the search itself)."""


class _SharedCancel(CancelToken):
    """A CancelToken whose flag is a multiprocessing event, set by the parent."""

    def __init__(self, event: Any):
        self._event = event


def _serve(open_library: Callable[[Settings], Any], settings: Settings, conn: Any, stop: Any) -> None:
    """The worker's main: open the library, then answer ("find", threshold, filters) until ("close",)."""
    try:
        library = open_library(settings)
    except BaseException as exc:  # the parent says why and searches itself
        conn.send(("lost", f"{type(exc).__name__}: {exc}"))
        return
    try:
        conn.send(("ready",))
        while True:
            message = conn.recv()
            if message[0] != "find":
                return
            _, threshold, filters = message
            try:
                report = library.duplicates.find(
                    threshold, filters=filters, cancel=_SharedCancel(stop),
                    progress=lambda p: conn.send(("progress", p)),
                    on_groups=lambda groups: conn.send(("groups", groups)),
                )  # fmt: skip
                report.groups = []  # the parent has them all already
                conn.send(("done", report))
            except Cancelled:
                conn.send(("cancelled",))
            except VisualFinderError as exc:
                conn.send(("error", exc))
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the parent went away
    finally:
        library.close()


class DuplicatesWorker:
    """One worker process for a library's duplicate searches (one search at a time)."""

    def __init__(self, settings: Settings, open_library: Callable[[Settings], Any]):
        self.settings = settings
        self._open = open_library
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Any = None
        self._stop: Any = None

    def find(
        self,
        threshold: float | None,
        filters: Filters | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        on_groups: GroupsCallback | None = None,
    ) -> DuplicateReport:
        """`Duplicates.find` in the worker; raises WorkerLost when the process is not there to do it."""
        with self._lock:
            self._start(cancel)
            self._stop.clear()
            if cancel is not None:
                cancel.raise_if_cancelled()
            self._conn.send(("find", threshold, filters))
            groups = []
            while True:
                message = self._receive(cancel)
                kind = message[0]
                if kind == "progress":
                    progress(message[1])
                elif kind == "groups":
                    groups.extend(message[1])
                    if on_groups is not None:
                        on_groups(message[1])
                elif kind == "done":
                    report = message[1]
                    report.groups = groups
                    return report
                elif kind == "cancelled":
                    raise Cancelled("cancelled")
                elif kind == "error":
                    raise message[1]

    def close(self) -> None:
        with self._lock:
            self._close()

    # --- the process ---------------------------------------------------------------------

    def _start(self, cancel: CancelToken | None) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._close()
        ctx = mp.get_context(start_method())
        parent, child = ctx.Pipe()
        self._stop = ctx.Event()
        process = ctx.Process(target=_serve, args=(self._open, self.settings, child, self._stop),
                              name="vf-duplicates", daemon=True)  # fmt: skip
        try:
            with without_main_module():
                process.start()
        except (OSError, RuntimeError, ValueError) as exc:
            raise WorkerLost(f"cannot start: {exc}") from exc
        child.close()
        self._process, self._conn = process, parent
        message = self._receive(cancel)
        if message[0] != "ready":
            self._close()
            raise WorkerLost(message[1] if message[0] == "lost" else f"unexpected {message[0]!r}")

    def _receive(self, cancel: CancelToken | None) -> tuple:
        """The worker's next message; Stop is passed on while waiting (a worker still opening is ended)."""
        while True:
            if cancel is not None and cancel.cancelled:
                self._stop.set()
            try:
                if self._conn.poll(_POLL_S):
                    return self._conn.recv()
            except (EOFError, OSError) as exc:
                code = self._process.exitcode
                self._close()
                raise WorkerLost(f"the worker process stopped (exit code {code})") from exc
            if not self._process.is_alive():
                code = self._process.exitcode
                self._close()
                raise WorkerLost(f"the worker process stopped (exit code {code})")

    def _close(self) -> None:
        process, conn, self._process, self._conn = self._process, self._conn, None, None
        if conn is not None:
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
        if process is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(1)
        if conn is not None:
            conn.close()
