"""Progress reporting and cancellation for long jobs, shared by the CLI, the GUI and the watcher.

The core never prints: it calls a ProgressCallback, and checks a CancelToken between steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from visualfinder.errors import Cancelled


class CancelToken:
    """Set from any thread to ask a running job to stop at its next safe point."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to `seconds`, waking early on cancel; returns True when cancelled."""
        return self._event.wait(seconds)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


@dataclass(frozen=True)
class Progress:
    """A snapshot of a job: `phase` names the step, `done` of `total` units (total 0 = unknown)."""

    phase: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """Default callback: report nothing."""
