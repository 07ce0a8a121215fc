"""The decoder process's side of `ingest/process_pool.py`: read, decode, thumbnail, preprocess.

Each worker process runs `serve`: it attaches to the pool's shared memory, says it is ready,
then answers one request at a time on its pipe. The pixels go into the worker's own slot of the
shared memory; the reply carries only the small facts (size, format, thumbnail path). This
module imports no torch (see models/pixels.py), so a worker starts in a fraction of a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from visualfinder.errors import ImageDecodeError
from visualfinder.ingest.imaging import (
    content_hash,
    decode_image,
    read_image_file,
    thumbnail_path,
    write_thumbnail,
)
from visualfinder.models.pixels import PixelRecipe, apply_recipe

log = logging.getLogger(__name__)

READY = "ready"


@dataclass(frozen=True)
class WorkerConfig:
    """What every decoder process of one pool needs (pickled once per process start)."""

    shm_name: str
    slot_shape: tuple[int, int, int]
    recipe: PixelRecipe
    decode_side: int
    max_pixels: int
    thumbnail_size: int
    thumbs_dir: str
    # Run once in each worker before it serves (tests install their faults here).
    initializer: Callable[[], None] | None = None

    @property
    def slot_bytes(self) -> int:
        return int(np.prod(self.slot_shape)) * 4


def serve(conn, config: WorkerConfig, slot: int) -> None:
    """A worker's life: answer (path, digest) requests until told to stop or the pipe closes."""
    if config.initializer is not None:
        config.initializer()
    # The parent owns (and unlinks) the block. Its resource tracker is this process's too, and
    # keeps one entry per name: attaching here adds nothing for it to clean up twice.
    shm = SharedMemory(name=config.shm_name)
    conn.send(READY)
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            conn.send(_answer(request, config, shm, slot))
    finally:
        shm.close()


def _answer(request: tuple[str, str], config: WorkerConfig, shm: SharedMemory, slot: int) -> tuple:
    """One file: ("ok", digest, width, height, format, thumb) | ("bad", reason) |
    ("storage", errno, strerror) | ("bug", text)."""
    path, _expected = request
    try:
        data = read_image_file(path)
        digest = content_hash(data)  # the file may have changed since the parent hashed it
        decoded = decode_image(data, min_side=config.decode_side, max_pixels=config.max_pixels, path=path)
        try:
            thumb = write_thumbnail(
                decoded.image, config.thumbnail_size, thumbnail_path(Path(config.thumbs_dir), digest)
            )
        except OSError as exc:
            return ("storage", exc.errno, exc.strerror or str(exc))
        out = np.ndarray(config.slot_shape, np.float32, buffer=shm.buf, offset=slot * config.slot_bytes)
        try:
            apply_recipe(decoded.image, config.recipe, out=out)
        finally:
            del out  # no view may outlive the request: the block is closed at exit
        return ("ok", digest, decoded.width, decoded.height, decoded.format, str(thumb))
    except ImageDecodeError as exc:
        return ("bad", exc.reason)
    except Exception as exc:  # a bug must cost one file, not the worker
        log.exception("unexpected error while decoding %s", path)
        return ("bug", f"unexpected error ({type(exc).__name__}: {exc})")
