"""Library events: how the GUI (and anything else) learns about work it did not start.

Listeners are called on the thread that emits (a worker or the watcher thread); the GUI
re-emits them as Qt signals, which Qt queues to the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from visualfinder.jobs import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LibraryChanged:
    """An indexing run (CLI, GUI or watcher) committed changes; `report` is its IndexReport."""

    report: object
    source: str  # "index", "watcher", "rebuild", "folders", "metadata", "model", "duplicates"


@dataclass(frozen=True)
class JobProgress:
    """Progress of background work the listener did not start (the watcher's batches)."""

    progress: Progress
    source: str


@dataclass(frozen=True)
class WatcherStatus:
    """The folder watcher's state, emitted when it changes; `message` is a user-facing sentence.

    state: 'starting' (setting up watches, applying changes made while nothing watched),
    'watching' (OS notifications), 'polling' (at least one folder is rescanned periodically:
    a network drive, or notifications failed), 'folder-missing' (a watched folder is gone or
    unmounted: its images are kept and it is picked up when it comes back), 'busy' (another
    process is writing the library; changes wait), 'error' (changes wait and are retried),
    'stopped'. `folders` pairs each watched folder with 'watching', 'polling', 'missing' (or
    'stopped').
    """

    state: str
    message: str = ""
    folders: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SyncStatusChanged:
    """The background sync (remote.worker.SyncWorker): 'pushing', 'idle' (all sent), 'pending',
    'offline' (cluster unreachable, retrying), 'rejected' (documents refused), 'error', 'stopped'.

    `pending` is the number of images with changes not yet on the cluster.
    """

    state: str
    pending: int
    message: str = ""
    at: float = 0.0


Listener = Callable[[object], None]


class EventHub:
    """Thread-safe publish/subscribe; a failing listener is logged and never breaks the emitter."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register `listener`; returns a function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self.unsubscribe(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def emit(self, event: object) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %r", listener, event)
