"""Jobs off the GUI thread: serial job queues with stop flags, and results delivered as Qt signals.

The shape follows vorta: the GUI thread validates and builds a Job (cheap, no side effects), a
JobQueue runs it on its own thread, and every outcome comes back through a queued signal, so
slots always run on the GUI thread. A queue runs one job at a time, so jobs never race on the
catalog; each job has a CancelToken, and `shutdown()` cancels and joins.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

from visualfinder.errors import Cancelled, VisualFinderError
from visualfinder.jobs import CancelToken, Progress

log = logging.getLogger(__name__)

# Progress from a worker reaches the GUI at most this often (a fast pipeline reports per file).
PROGRESS_INTERVAL_S = 0.08


def _drop(_: object) -> None:
    """A job's partial results when nobody listens for them."""


@dataclass
class JobContext:
    """What a job function gets: its stop flag, a progress callback, and `partial` for results
    it has already (each reaches the GUI, in order, as the job's `partial` signal; callable
    from any thread, never throttled)."""

    cancel: CancelToken
    progress: Callable[[Progress], None]
    partial: Callable[[object], None] = _drop


class Job(QObject):
    """One unit of background work. Its signals are always emitted on the GUI thread."""

    started = Signal()
    progressed = Signal(object)  # Progress
    partial = Signal(object)  # a part of the result, sent by the job while it runs (JobContext.partial)
    succeeded = Signal(object)  # the function's return value
    failed = Signal(str)  # a user-facing message
    cancelled = Signal()
    finished = Signal()  # after any of succeeded / failed / cancelled

    _ids = itertools.count(1)

    def __init__(self, name: str, fn: Callable[[JobContext], Any], *, key: str | None = None):
        super().__init__()
        self.id = next(Job._ids)
        self.name = name
        self.fn = fn
        # Jobs with the same key supersede each other: a new search cancels the one before it.
        self.key = key
        self.token = CancelToken()
        self.state = "pending"  # pending, running, succeeded, failed, cancelled
        self.result: Any = None
        self.error: str | None = None

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name} {self.state}>"


class JobQueue(QObject):
    """A worker thread running submitted jobs one after another."""

    _deliver = Signal(object, str, object)  # job, what happened, payload (from the worker thread)
    busyChanged = Signal(bool)
    jobStarted = Signal(object)
    jobFinished = Signal(object)

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._jobs: deque[Job] = deque()
        self._current: Job | None = None
        self._condition = threading.Condition()
        self._stopping = False
        self._shut = False
        self._undelivered = 0  # jobs taken by the worker whose outcome the GUI has not seen yet
        # Queued explicitly: the slot runs on this object's (the GUI) thread whoever emits.
        self._deliver.connect(self._on_deliver, Qt.ConnectionType.QueuedConnection)
        self._thread = threading.Thread(target=self._run, name=f"vf-{name}", daemon=True)
        self._thread.start()

    # --- GUI thread ----------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        if self._stopping:
            raise RuntimeError(f"job queue {self.name} is shut down")
        with self._condition:
            if job.key is not None:
                for other in [*self._jobs, self._current]:
                    if other is not None and other.key == job.key:
                        other.cancel()
            was_busy = self.busy
            self._jobs.append(job)
            self._undelivered += 1
            self._condition.notify()
        if not was_busy:
            self.busyChanged.emit(True)
        return job

    def call(self, name: str, fn: Callable[[JobContext], Any], *, key: str | None = None) -> Job:
        return self.submit(Job(name, fn, key=key))

    @property
    def busy(self) -> bool:
        return self._undelivered > 0

    def jobs(self) -> list[Job]:
        """The running and pending jobs."""
        with self._condition:
            return [j for j in (self._current, *self._jobs) if j is not None]

    def cancel_all(self) -> None:
        for job in self.jobs():
            job.cancel()

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Cancel everything and join the worker; False if a job would not stop in time."""
        self._stopping = True
        self.cancel_all()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout)
        # From now on outcomes are dropped: the window that asked may be gone (a left-behind
        # download finishing later must not call into deleted widgets).
        self._shut = True
        if self._thread.is_alive():
            log.info("job queue %s: %s is left to finish in the background", self.name, self._current)
            return False
        return True

    @property
    def alive(self) -> bool:
        """The worker thread still runs (after shutdown: a job that could not be interrupted)."""
        return self._thread.is_alive()

    @Slot(object, str, object)
    def _on_deliver(self, job: Job, what: str, payload: object) -> None:
        if self._shut:
            if what not in ("started", "progress", "partial"):
                job.state = "cancelled"
            return
        if what == "started":
            job.state = "running"
            self.jobStarted.emit(job)
            job.started.emit()
            return
        if what == "progress":
            if not job.done:
                job.progressed.emit(payload)
            return
        if what == "partial":
            # Parts of a superseded or stopped job's result answer a question nobody asks any more.
            if not job.done and not job.token.cancelled:
                job.partial.emit(payload)
            return
        # A job cancelled while it ran (superseded search, stop button) reports "cancelled" even
        # if it finished: its result belongs to a question nobody is asking any more.
        if what == "succeeded" and job.token.cancelled and job.key is not None:
            what = "cancelled"
        job.state = what
        if what == "succeeded":
            job.result = payload
            job.succeeded.emit(payload)
        elif what == "failed":
            job.error = str(payload)
            job.failed.emit(str(payload))
        else:
            job.cancelled.emit()
        job.finished.emit()
        self._undelivered -= 1
        self.jobFinished.emit(job)
        if not self.busy:
            self.busyChanged.emit(False)

    # --- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._jobs and not self._stopping:
                    self._condition.wait()
                if not self._jobs:
                    return  # stopping and drained
                job = self._current = self._jobs.popleft()
            try:
                self._run_job(job)
            finally:
                with self._condition:
                    self._current = None

    def _run_job(self, job: Job) -> None:
        if job.token.cancelled:
            self._deliver.emit(job, "cancelled", None)
            return
        self._deliver.emit(job, "started", None)
        context = JobContext(
            job.token,
            _ThrottledProgress(lambda p: self._deliver.emit(job, "progress", p)),
            lambda part: self._deliver.emit(job, "partial", part),
        )
        started = time.perf_counter()
        try:
            result = job.fn(context)
        except Cancelled:
            self._deliver.emit(job, "cancelled", None)
        except VisualFinderError as exc:
            log.info("%s failed: %s", job.name, exc)
            self._deliver.emit(job, "failed", str(exc))
        except Exception as exc:  # a bug: keep the app alive, log the traceback, say what failed
            if self._stopping and job.token.cancelled:  # the app is closing under it: not a bug
                log.debug("%s stopped by shutdown: %r", job.name, exc)
                self._deliver.emit(job, "cancelled", None)
                return
            log.exception("%s failed unexpectedly", job.name)
            self._deliver.emit(job, "failed", f"{job.name} failed unexpectedly ({type(exc).__name__}: {exc})")
        else:
            log.debug("%s finished in %.3fs", job.name, time.perf_counter() - started)
            self._deliver.emit(job, "succeeded", result)


class _ThrottledProgress:
    """Forwards progress at most every PROGRESS_INTERVAL_S, always forwarding a phase's end."""

    def __init__(self, forward: Callable[[Progress], None]):
        self._forward = forward
        self._last = 0.0
        self._phase = ""

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        finished = progress.total and progress.done >= progress.total
        if finished or progress.phase != self._phase or now - self._last >= PROGRESS_INTERVAL_S:
            self._phase = progress.phase
            self._last = now
            self._forward(progress)


class _Relay(QObject):
    """Carries a pool task's outcome to a callback on the GUI thread."""

    _done = Signal(object, object)  # result, exception
    # Relays waiting for their task: without a reference, Python would delete one (and the
    # queued call with it) as soon as the task object is gone.
    _live: set[_Relay] = set()

    def __init__(self, on_done: Callable[[Any], None], on_error: Callable[[BaseException], None] | None):
        super().__init__()
        self._on_done = on_done
        self._on_error = on_error
        self._done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        _Relay._live.add(self)

    @Slot(object, object)
    def _deliver(self, result: object, error: object) -> None:
        _Relay._live.discard(self)
        try:
            if error is None:
                self._on_done(result)
            elif self._on_error is not None:
                self._on_error(error)
            else:
                log.error("background task failed: %s", error)
        finally:
            self._on_done = self._on_error = None


class _PoolTask(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay):
        super().__init__()
        self._fn = fn
        self._relay = relay

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # delivered to on_error on the GUI thread
            self._relay._done.emit(None, exc)
        else:
            self._relay._done.emit(result, None)


def run_in_pool(
    pool: QThreadPool,
    fn: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Run a short, self-contained task (no catalog access) on `pool`; `on_done` runs on the GUI thread."""
    pool.start(_PoolTask(fn, _Relay(on_done, on_error)))
