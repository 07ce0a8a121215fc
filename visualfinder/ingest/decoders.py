"""Where the indexing pipeline decodes: in its threads, in worker processes, or on the GPU.

`choose_decode_backend` is the one rule ("use the process pool only where it pays") and
`open_decoder` builds what it chose. A decoder's `decode(path, data, digest, limit)` returns an
`Offloaded` file, or None for "decode it in the calling thread as usual" (threads, or a file the
GPU decoder does not take).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from visualfinder.config import DECODE_BACKENDS
from visualfinder.ingest.process_pool import Offloaded, ProcessDecoder

log = logging.getLogger(__name__)

# Processes pay for themselves from this many cores (measured: tests/benchmarks/test_decode_backends.py).
PROCESS_MIN_CPUS = 4
# Starting worker processes costs ~0.1-1 s; a watcher's handful of files decodes faster in threads.
PROCESS_MIN_FILES = 64


class Decoder(Protocol):
    def decode(self, path: str, data: bytes, digest: str, limit: float | None) -> Offloaded | None: ...

    def close(self) -> None: ...


def choose_decode_backend(requested: str, device: str, cpus: int, files: int, gpu_decode: bool) -> str:
    """The backend for a run of `files` files: the setting, or (auto) what pays on this machine.

    Threads on a small CPU box (the model wants the cores; a process per decoder adds memory
    and start-up for nothing), processes where threads contend for the GIL (>= 4 cores, or a
    GPU waiting on the decoders), the GPU's own JPEG decoder on CUDA when torchvision has it.
    """
    if requested not in DECODE_BACKENDS:
        raise ValueError(f"decode backend must be one of {', '.join(DECODE_BACKENDS)}, not {requested!r}")
    if requested == "gpu" and not (device == "cuda" and gpu_decode):
        requested = "processes"  # asked for the GPU where there is none: the next best thing
    if requested != "auto":
        return requested
    if files < PROCESS_MIN_FILES:
        return "threads"
    if device == "cuda" and gpu_decode:
        return "gpu"
    if device in ("cuda", "mps") or cpus >= PROCESS_MIN_CPUS:
        return "processes"
    return "threads"


def open_decoder(
    backend: str,
    embedder,
    workers: int,
    *,
    decode_side: int,
    max_pixels: int,
    thumbnail_size: int,
    thumbs_dir: Path,
    initializer=None,
) -> Decoder | None:
    """The decoder for `backend` (None: threads, or a model whose preprocessing we cannot replicate)."""
    if backend == "threads":
        return None
    recipe = embedder.pixel_recipe()
    if recipe is None:
        log.info("the model's preprocessing has an unusual shape: decoding in threads")
        return None
    processes = ProcessDecoder(workers, recipe, decode_side=decode_side, max_pixels=max_pixels,
                               thumbnail_size=thumbnail_size, thumbs_dir=thumbs_dir, initializer=initializer)  # fmt: skip
    if backend != "gpu":
        return _Processes(processes)
    from visualfinder.ingest.gpu_decode import GpuJpegDecoder

    return GpuJpegDecoder(recipe, embedder.device, decode_side=decode_side, max_pixels=max_pixels,
                          thumbnail_size=thumbnail_size, thumbs_dir=thumbs_dir, fallback=_Processes(processes))  # fmt: skip


class _Processes:
    """ProcessDecoder in the Decoder shape (it re-reads the file itself: cheaper than a pipe)."""

    def __init__(self, pool: ProcessDecoder):
        self.pool = pool

    def decode(self, path: str, data: bytes, digest: str, limit: float | None) -> Offloaded:
        return self.pool.decode(path, digest, limit)

    def close(self) -> None:
        self.pool.close()
