"""Decoding in worker processes: the GIL-free decode backend of the indexing pipeline.

On a machine with many cores (or a GPU waiting on the decoders), decode threads contend for
the GIL: 15 threads on 16 cores fed an H200 at 133 camera JPEGs/s. Here the heavy part of a
file (read, decode, thumbnail, preprocess) runs in a worker process; the pipeline's decode
threads stay in charge of everything else (ordering, look-ahead, the catalog lookups, the
per-file time limit) and each simply waits, without the GIL, for one process to answer.

- Pixels come back through shared memory: one slot of 3 x H x W float32 per worker, copied
  out at once into a torch tensor (a fraction of a millisecond), so a slot is free again as
  soon as its worker is.
- Workers start with 'forkserver' where the OS has it (a fresh interpreter that forks cheap
  copies of itself; never a fork of this process, whose torch and OpenMP threads would be
  copied half-locked), else 'spawn'.
- A worker that dies (a crash in a native decoder, an OOM kill) costs its file, which is
  recorded with the reason; a replacement starts. A worker still busy at the file's deadline
  is killed and replaced: a process, unlike a thread, can be stopped.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import sys
import threading
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from visualfinder.errors import Cancelled, ImageDecodeError
from visualfinder.ingest import decode_worker
from visualfinder.ingest.decode_worker import READY, WorkerConfig
from visualfinder.ingest.workpool import TaskTimedOut, current_task_started
from visualfinder.models.pixels import PixelRecipe

log = logging.getLogger(__name__)

# How often a waiting thread looks for a closed pool; how long a new worker may take to start.
_POLL_S = 0.2
_START_TIMEOUT_S = 120.0


@dataclass
class Offloaded:
    """A file decoded elsewhere: what the pipeline stores, and the model's input tensor."""

    digest: str
    width: int
    height: int
    format: str
    thumb: str
    tensor: object


def start_method() -> str:
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class _Worker:
    def __init__(self, process, conn, slot: int):
        self.process, self.conn, self.slot = process, conn, slot


class ProcessDecoder:
    """`workers` decoder processes sharing one block of pixel slots; call `decode` from threads."""

    def __init__(
        self,
        workers: int,
        recipe: PixelRecipe,
        *,
        decode_side: int,
        max_pixels: int,
        thumbnail_size: int,
        thumbs_dir: Path,
        initializer=None,
    ):
        self._ctx = mp.get_context(start_method())
        if self._ctx.get_start_method() == "forkserver":
            # What the server imports once, so each worker forks with it already loaded.
            self._ctx.set_forkserver_preload(["visualfinder.ingest.decode_worker"])
        shape = recipe.shape
        self._shm = SharedMemory(create=True, size=max(1, workers) * int(np.prod(shape)) * 4)
        self.config = WorkerConfig(self._shm.name, shape, recipe, decode_side, max_pixels, thumbnail_size,
                                   str(thumbs_dir), initializer)  # fmt: skip
        self._lock = threading.Lock()
        self._idle_changed = threading.Condition(self._lock)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        self._live = 0  # workers started and not lost: when none is left, threads decode
        self.replaced = 0  # workers started in place of one that crashed or overran
        try:
            starting = [self._start(slot) for slot in range(max(1, workers))]
            for worker in starting:
                self._wait_ready(worker)
        except BaseException:
            self.close()
            raise
        self._idle.extend(starting)
        self._live = len(starting)

    # --- the pipeline's side -------------------------------------------------------------

    def decode(self, path: str, digest: str, limit: float | None = None) -> Offloaded | None:
        """Decode one file in a worker process (blocks this thread, not the GIL).

        Raises ImageDecodeError for a bad file or a worker that died on it, TaskTimedOut when
        the file's deadline passed (its `limit`, counted from the start of the calling pool
        task), Cancelled when the pool was closed meanwhile. None when no worker could be
        restarted: the caller decodes in its own thread.
        """
        worker = self._checkout()
        if worker is None:
            return None
        started = current_task_started() or time.monotonic()
        deadline = None if limit is None else started + limit
        try:
            worker.conn.send((path, digest))
            reply = self._await(worker, deadline)
        except _WorkerLost as lost:
            self._replace(worker)
            if self._closed:
                raise Cancelled("indexing cancelled") from None
            if lost.overran:
                raise TaskTimedOut(time.monotonic() - started) from None
            raise ImageDecodeError(
                f"the decoder process stopped while decoding this file ({lost.how}); tried again on later scans",
                path,
                transient=True,  # an out-of-memory kill passes; a file that always crashes it backs off
            ) from None
        try:
            return self._outcome(reply, worker, path)
        finally:
            self._checkin(worker)

    def close(self) -> None:
        """Stop every worker (a busy one is killed: its file's result is no longer wanted)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._idle_changed.notify_all()
        for worker in idle:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in busy:
            worker.process.kill()
        for worker in idle + busy:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        with self._lock:  # no thread is copying out of a slot now (see _outcome)
            self._shm.close()
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> ProcessDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------

    def _start(self, slot: int) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=decode_worker.serve, args=(child, self.config, slot),
                                    name=f"vf-decoder-{slot}", daemon=True)  # fmt: skip
        with without_main_module():
            process.start()
        child.close()
        return _Worker(process, parent, slot)

    def _wait_ready(self, worker: _Worker) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            while not worker.conn.poll(_POLL_S):
                if not worker.process.is_alive() or time.monotonic() > deadline:
                    raise EOFError
            if worker.conn.recv() != READY:
                raise EOFError
        except (EOFError, OSError):
            worker.process.kill()
            raise RuntimeError(
                f"a decoder process did not start ({_describe_exit(worker.process.exitcode)})"
            ) from None

    def _checkout(self) -> _Worker | None:
        with self._lock:
            while not self._idle:
                if self._closed:
                    raise Cancelled("indexing cancelled")
                if not self._live:
                    return None
                self._idle_changed.wait(_POLL_S)
            worker = self._idle.pop()
            self._busy.add(worker)
            return worker

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not self._closed:
                self._idle.append(worker)
                self._idle_changed.notify()

    def _await(self, worker: _Worker, deadline: float | None) -> tuple:
        while True:
            wait = _POLL_S if deadline is None else min(_POLL_S, max(0.0, deadline - time.monotonic()))
            try:
                if worker.conn.poll(wait):
                    return worker.conn.recv()
            except (EOFError, OSError):
                worker.process.join(1)
                raise _WorkerLost(_describe_exit(worker.process.exitcode)) from None
            if self._closed:
                raise _WorkerLost("the pool was closed")
            if not worker.process.is_alive():
                worker.process.join(1)
                raise _WorkerLost(_describe_exit(worker.process.exitcode))
            if deadline is not None and time.monotonic() >= deadline:
                raise _WorkerLost("still running at the file's time limit", overran=True)

    def _replace(self, worker: _Worker) -> None:
        """Kill a lost worker and start another on its slot (unless the pool is closing)."""
        worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        with self._lock:
            self._busy.discard(worker)
            self._live -= 1
            if self._closed:
                return
        try:
            replacement = self._start(worker.slot)
            self._wait_ready(replacement)
        except (RuntimeError, OSError):
            log.exception("a replacement decoder process did not start; its share is decoded in threads")
            return
        with self._lock:
            self._live += 1
        self.replaced += 1
        log.info("decoder process %s replaced", worker.slot)
        self._checkin(replacement)

    def _outcome(self, reply: tuple, worker: _Worker, path: str) -> Offloaded:
        import torch

        kind = reply[0]
        if kind == "bad" or kind == "bug":
            raise ImageDecodeError(reply[1], path)
        if kind == "storage":
            raise OSError(reply[1], reply[2])
        _, digest, width, height, fmt, thumb = reply
        with self._lock:
            if self._closed:
                raise Cancelled("indexing cancelled")
            view = np.ndarray(self.config.slot_shape, np.float32, buffer=self._shm.buf,
                              offset=worker.slot * self.config.slot_bytes)  # fmt: skip
            tensor = torch.from_numpy(view.copy())
            del view
        return Offloaded(digest, width, height, fmt, thumb, tensor)


_main_lock = threading.Lock()


@contextmanager
def without_main_module():
    """Start a worker without the program's __main__: multiprocessing would re-import it in the
    child (the whole CLI or app, or a script's unguarded code); a worker needs none of it."""
    with _main_lock:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class _WorkerLost(Exception):
    def __init__(self, how: str, overran: bool = False):
        super().__init__(how)
        self.how, self.overran = how, overran


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
