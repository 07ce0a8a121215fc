"""A thread pool whose stuck tasks can be given up on: the indexing pipeline's per-file time limit.

A Python thread cannot be killed. When a task runs past its limit (a pathological decode, a
read from a stalled network share), the caller stops waiting for it, a fresh worker takes the
stuck one's place, and the stuck thread retires when (if ever) its call returns. Workers are
daemon threads, so a call that never returns cannot keep the process from exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from visualfinder.jobs import CancelToken

log = logging.getLogger(__name__)

# How often a waiting caller looks at its cancel token.
_CANCEL_POLL_S = 0.2
# The task each worker thread is running, so work it hands elsewhere can share its deadline.
_running = threading.local()


def current_task_started() -> float | None:
    """When the pool task running on this thread started (time.monotonic), None off the pool."""
    return getattr(_running, "started", None)


class TaskTimedOut(Exception):
    """A task ran longer than its limit; its worker was replaced and its result will be ignored."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        super().__init__(f"task still running after {seconds:.1f} s")


@dataclass(eq=False)
class Task:
    """One submitted call: its future, and when a worker started it."""

    fn: Callable[..., object]
    args: tuple
    future: Future = field(default_factory=Future)
    started: float | None = None
    thread: threading.Thread | None = None
    finished: bool = False
    abandoned: bool = False


class WorkerPool:
    """A fixed number of daemon worker threads running submitted calls in order."""

    def __init__(self, workers: int, name: str = "vf-worker"):
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()  # live workers that are not stuck
        self._name = name
        self._spawned = 0
        self._closed = False
        with self._lock:
            for _ in range(max(1, workers)):
                self._spawn()

    def submit(self, fn: Callable[..., object], *args: object) -> Task:
        if self._closed:
            raise RuntimeError("the pool is shut down")
        task = Task(fn, args)
        self._queue.put(task)
        return task

    def result(self, task: Task, limit: float | None = None, cancel: CancelToken | None = None) -> object:
        """Wait for `task`'s result (or exception).

        Raises TaskTimedOut once it has *run* (queueing does not count) for `limit` seconds, and
        Cancelled when `cancel` is set while waiting.
        """
        while True:
            if limit is None or task.started is None:
                wait = _CANCEL_POLL_S if (cancel is not None or limit is not None) else None
            else:
                wait = max(0.0, task.started + limit - time.monotonic())
                if cancel is not None:
                    wait = min(wait, _CANCEL_POLL_S)
            try:
                return task.future.result(timeout=wait)
            except FutureTimeout:
                pass
            if cancel is not None:
                cancel.raise_if_cancelled()
            started = task.started
            overdue = limit is not None and started is not None and time.monotonic() - started >= limit
            if overdue and self._abandon(task):
                raise TaskTimedOut(time.monotonic() - started) from None

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Cancel queued tasks and stop the workers; `wait` joins those not given up on.

        `timeout` bounds the whole wait (a worker still busy after it is left to finish alone).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task.future.cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # --- internals -----------------------------------------------------------------------

    def _spawn(self) -> None:
        """Start one worker (caller holds the lock)."""
        self._spawned += 1
        thread = threading.Thread(target=self._work, name=f"{self._name}-{self._spawned}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def _abandon(self, task: Task) -> bool:
        """Give up on a running task: a new worker replaces its thread. False if it just finished."""
        with self._lock:
            if task.finished:
                return False
            task.abandoned = True
            self._threads.discard(task.thread)
            if not self._closed:
                self._spawn()
        log.debug("gave up on a task of %s; a new worker takes its place", task.thread)
        return True

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            task = self._queue.get()
            if task is None:
                break
            if not task.future.set_running_or_notify_cancel():
                continue
            task.thread = me
            task.started = _running.started = time.monotonic()
            try:
                result = task.fn(*task.args)
            except BaseException as exc:  # handed to the caller through the future
                outcome: tuple[bool, object] = (False, exc)
            else:
                outcome = (True, result)
            with self._lock:
                task.finished = True
                retire = task.abandoned
            if outcome[0]:
                task.future.set_result(outcome[1])
            else:
                task.future.set_exception(outcome[1])
            del task, outcome
            if retire:
                log.info("a worker that ran past its time limit has finished and retires")
                return
        with self._lock:
            self._threads.discard(me)
