"""The model gate: model calls on one thread, batched, behind a bounded queue.

Concurrent torch calls on a small CPU each take every core and thrash. Here one thread runs
the model: it takes every search waiting at that moment (up to `max_batch`) and answers them
with one batched call of the model per kind of input, which costs much less per query than
one call each. Requests beyond `queue_size` get 429; one that waited past `timeout_s` for its
turn gets 503; both say when to retry (Retry-After, from the recent pace).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from visualfinder.api.errors import ApiError

# Answers a batch of items: one result per item, an Exception instance for an item that failed.
BatchFunc = Callable[[Sequence[Any]], list[Any]]


@dataclass
class _Job:
    item: Any
    deadline: float
    loop: asyncio.AbstractEventLoop
    turn: asyncio.Event
    future: Future = field(default_factory=Future)


class ModelGate:
    def __init__(self, batch: BatchFunc, queue_size: int, timeout_s: float, max_batch: int = 16):
        self.batch = batch
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_system = 0  # running + waiting
        self._mean_s = 0.05  # recent seconds per item (exponential average)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="vf-model", daemon=True)
        self._thread.start()

    @property
    def in_system(self) -> int:
        return self._in_system

    def retry_after(self) -> float:
        """Seconds until the current queue has likely drained."""
        return max(1.0, self._in_system * self._mean_s)

    async def run(self, item: Any) -> Any:
        with self._lock:
            if self._closed:
                raise ApiError(503, "shutting_down", "the server is shutting down", retry_after=5)
            if self._in_system >= self.queue_size:
                raise ApiError(429, "busy", f"{self._in_system} searches are queued; try again shortly",
                               retry_after=self.retry_after())  # fmt: skip
            self._in_system += 1
        try:
            job = _Job(item, time.monotonic() + self.timeout_s, asyncio.get_running_loop(), asyncio.Event())
            self._jobs.put(job)
            try:
                # The limit is on waiting for a turn; a batch that has started runs to its end.
                await asyncio.wait_for(job.turn.wait(), self.timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(503, "overloaded", f"no turn for the model within {self.timeout_s:g} s",
                               retry_after=self.retry_after()) from None  # fmt: skip
            return await asyncio.wrap_future(job.future)
        finally:
            with self._lock:
                self._in_system -= 1

    def _work(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                jobs.append(more)
            now = time.monotonic()
            jobs = [job for job in jobs if job.deadline >= now]  # the others were told 503 already
            if not jobs:
                continue
            for job in jobs:
                job.loop.call_soon_threadsafe(job.turn.set)
            started = time.perf_counter()
            try:
                answers = self.batch([job.item for job in jobs])
            except BaseException as exc:  # the batch function failed as a whole: each caller hears why
                answers = [exc] * len(jobs)
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - started) / len(jobs)
            for job, answer in zip(jobs, answers, strict=True):
                if isinstance(answer, BaseException):
                    job.future.set_exception(answer)
                else:
                    job.future.set_result(answer)

    def close(self) -> None:
        """Refuse new calls; answer those queued, then stop the model thread."""
        with self._lock:
            self._closed = True
        self._jobs.put(None)
        self._thread.join()
