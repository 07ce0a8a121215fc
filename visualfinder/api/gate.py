"""The model gate: model calls one at a time on one thread, behind a bounded queue.

Concurrent torch calls on a small CPU each take every core and thrash; one at a time, each
query takes the whole machine and the queue moves fastest. Requests beyond `queue_size` get
429 and those that waited past `timeout_s` 503, both with Retry-After from the recent pace.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from visualfinder.api.errors import ApiError

T = TypeVar("T")


class _Expired(Exception):
    """The caller stopped waiting before the job's turn came: skip it."""


class ModelGate:
    def __init__(self, queue_size: int, timeout_s: float):
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vf-model")
        self._lock = threading.Lock()
        self._in_system = 0  # running + waiting
        self._mean_s = 0.05  # recent seconds per call (exponential average)
        self._closed = False

    @property
    def in_system(self) -> int:
        return self._in_system

    def retry_after(self) -> float:
        """Seconds until the current queue has likely drained."""
        return max(1.0, self._in_system * self._mean_s)

    async def run(self, func: Callable[..., T], *args) -> T:
        with self._lock:
            if self._closed:
                raise ApiError(503, "shutting_down", "the server is shutting down", retry_after=5)
            if self._in_system >= self.queue_size:
                raise ApiError(429, "busy", f"{self._in_system} searches are queued; try again shortly",
                               retry_after=self.retry_after())  # fmt: skip
            self._in_system += 1
        loop = asyncio.get_running_loop()
        turn = asyncio.Event()
        deadline = time.monotonic() + self.timeout_s
        try:
            future = loop.run_in_executor(self._executor, self._call, deadline, turn, loop, func, args)
            try:
                # The limit is on waiting for a turn; a call that has started runs to its end.
                await asyncio.wait_for(turn.wait(), self.timeout_s)
                return await future
            except (asyncio.TimeoutError, _Expired):
                raise ApiError(503, "overloaded", f"no turn for the model within {self.timeout_s:g} s",
                               retry_after=self.retry_after()) from None  # fmt: skip
        finally:
            with self._lock:
                self._in_system -= 1

    def _call(self, deadline: float, turn: asyncio.Event, loop, func: Callable[..., T], args: tuple) -> T:
        if time.monotonic() > deadline:
            raise _Expired
        loop.call_soon_threadsafe(turn.set)
        started = time.perf_counter()
        try:
            return func(*args)
        finally:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - started)

    def close(self) -> None:
        """Refuse new calls and wait for the one running (and those queued) to finish."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True)
