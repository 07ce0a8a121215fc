"""Helpers for watcher tests: poll for a condition with a deadline, record library events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from visualfinder.events import LibraryChanged, WatcherStatus

# Quick enough for tests, and still exercising every rule (debounce, stable size, max delay).
FAST_WATCH = {
    "watch_debounce_s": 0.15,
    "watch_stable_s": 0.15,
    "watch_max_delay_s": 1.0,
    "watch_check_interval_s": 0.2,
    "watch_poll_interval_s": 0.2,
}


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` passes (the machine may be busy)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


class EventLog:
    """Everything a library emits, kept for assertions (listeners run on the watcher thread)."""

    def __init__(self, library):
        self.events: list[object] = []
        self._lock = threading.Lock()
        self.unsubscribe = library.events.subscribe(self._on_event)

    def _on_event(self, event: object) -> None:
        with self._lock:
            self.events.append(event)

    def reports(self):
        with self._lock:
            return [e.report for e in self.events if isinstance(e, LibraryChanged) and e.source == "watcher"]

    def states(self) -> list[str]:
        with self._lock:
            return [e.state for e in self.events if isinstance(e, WatcherStatus)]

    def total(self, field: str) -> int:
        return sum(getattr(r, field) for r in self.reports())

    def errors_for(self, path) -> list[str]:
        return [e.reason for r in self.reports() for e in r.errors if e.path == str(path)]
