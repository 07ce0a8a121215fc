"""Progress reporting and cancellation for long jobs, shared by the CLI, the GUI and the watcher.

The core never prints: it calls a ProgressCallback, and checks a CancelToken between steps.
"""

from __future__ import annotations

import logging
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


class BackgroundJob:
    """A long job on its own thread: cancel it, wait for it, then read `result` or `error`.

    The job function receives the job's CancelToken; exceptions are kept in `error` (and
    logged), never raised on the worker thread.
    """

    def __init__(self, name: str, func: Callable[[CancelToken], object]):
        self.name = name
        self.cancel_token = CancelToken()
        self.result: object = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._func = func
        self._thread = threading.Thread(target=self._run, name=f"vf-{name}", daemon=True)

    def start(self) -> BackgroundJob:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._func(self.cancel_token)
        except BaseException as exc:  # kept for the caller; a worker thread has no one to raise to
            self.error = exc
            if not isinstance(exc, Cancelled):
                logging.getLogger(__name__).exception("background job %s failed", self.name)
        finally:
            self._done.set()

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has finished; False if `timeout` passed first."""
        return self._done.wait(timeout)


class JobList:
    """The background jobs one owner started, so that closing the owner stops them all."""

    def __init__(self) -> None:
        self._jobs: list[BackgroundJob] = []
        self._lock = threading.Lock()

    def start(self, job: BackgroundJob) -> BackgroundJob:
        with self._lock:
            self._jobs = [j for j in self._jobs if not j.done] + [job]
        return job.start()

    def stop_all(self) -> None:
        """Cancel every running job and wait for it to finish."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
            job.wait()
