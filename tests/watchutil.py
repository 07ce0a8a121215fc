"""Helpers for watcher tests: poll for a condition with a deadline, record library events, run
`visualfinder watch` in a real process."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from procutil import subprocess_env

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


class WatchProcess:
    """`python -m visualfinder watch ...` with its stdout and stderr read line by line."""

    def __init__(self, *args: str, prefix: list[str] | None = None, paths: tuple[str, ...] = ()):
        env = subprocess_env(*paths)
        self.proc = subprocess.Popen([*(prefix or []), sys.executable, "-m", "visualfinder", "watch", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._new: queue.Queue = queue.Queue()
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._read, args=(name,), daemon=True).start()

    def _read(self, name: str) -> None:
        for line in getattr(self.proc, name):
            self.lines[name].append(line.rstrip("\n"))
            self._new.put(name)

    def wait_for(self, name: str, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines[name] if text in line]
            if found:
                return found[0]
            if self.proc.poll() is not None and self._new.empty():
                raise AssertionError(f"exited {self.proc.returncode} without {text!r}: {self.lines}")
            try:
                self._new.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} on {name} within {timeout}s: {self.lines}") from None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
