"""CUDA specifics of the embedder: half-precision weights checked against fp32, the batch size
from free VRAM, pinned host buffers. The decisions are pure functions (tested on CPU); the
functions that touch a GPU are small and named for it.
"""

from __future__ import annotations

import copy
import logging
import threading

import numpy as np

log = logging.getLogger(__name__)

# Half-precision weights are used only when their vectors agree with fp32's this closely.
HALF_MIN_COSINE = 0.999
# Batch sizes the VRAM rule may choose, and the share of free VRAM it may plan for (the rest:
# the decoder's images, other processes, fragmentation).
MIN_GPU_BATCH, MAX_GPU_BATCH = 16, 512
VRAM_SHARE = 0.5
# Images in the agreement check (seeded noise: a fixed, image-like spread of inputs).
CHECK_IMAGES = 16


def min_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The worst cosine between matching rows of two (n, dim) arrays of vectors."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape or not len(a):
        raise ValueError(f"cannot compare vectors of shapes {a.shape} and {b.shape}")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.min(np.sum(a * b, axis=1)))


def half_agrees(reference: np.ndarray, candidate: np.ndarray, threshold: float = HALF_MIN_COSINE) -> bool:
    """True when every half-precision vector is within `threshold` cosine of its fp32 twin
    (a NaN from an fp16 overflow fails too)."""
    cos = min_cosine(reference, candidate)
    return bool(np.isfinite(cos) and cos >= threshold)


def batch_for_vram(free_bytes: int, bytes_per_image: int, floor: int = MIN_GPU_BATCH,
                   ceiling: int = MAX_GPU_BATCH, share: float = VRAM_SHARE) -> int:  # fmt: skip
    """The largest power-of-two batch whose activations fit in `share` of the free VRAM, within
    [floor, ceiling] (the floor wins: a batch that does not fit fails loudly, never silently)."""
    if bytes_per_image <= 0:
        return floor
    fits = int(free_bytes * share) // bytes_per_image
    batch = floor
    while batch * 2 <= min(fits, ceiling):
        batch *= 2
    return batch


def seeded_pixels(count: int, image_size: int):
    """A fixed batch of model inputs (normalised-pixel-like noise), the same on every machine."""
    import torch

    return torch.randn(count, 3, image_size, image_size, generator=torch.Generator().manual_seed(7))


# --- on a GPU ------------------------------------------------------------------------------


def half_model_if_it_agrees(model, image_size: int, device: str, dtype=None):
    """(a half-precision copy of `model`, its worst cosine to fp32) or (None, cosine) when it
    does not agree; bf16 where fp16 fails. The fp32 model is left as it was."""
    import torch

    pixels = seeded_pixels(CHECK_IMAGES, image_size).to(device)
    with torch.inference_mode():
        reference = model.encode_image(pixels).float().cpu().numpy()
    worst = float("nan")
    for candidate_dtype in [dtype] if dtype is not None else [torch.float16, torch.bfloat16]:
        half = copy.deepcopy(model).to(dtype=candidate_dtype)
        with torch.inference_mode():
            vectors = half.encode_image(pixels.to(candidate_dtype)).float().cpu().numpy()
        worst = min_cosine(reference, vectors)
        log.info("%s weights agree with fp32 to a cosine of %.5f", candidate_dtype, worst)
        if half_agrees(reference, vectors):
            return half, worst
        del half
    return None, worst


def bytes_per_image(model, image_size: int, device: str, dtype) -> int:
    """Peak VRAM one image's forward pass needs, measured on a small batch."""
    import torch

    probe = 8
    pixels = seeded_pixels(probe, image_size).to(device, dtype=dtype)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.inference_mode():
        model.encode_image(pixels)
    torch.cuda.synchronize()
    return max(1, (torch.cuda.max_memory_allocated() - before) // probe)


def free_vram() -> int:
    import torch

    free, _total = torch.cuda.mem_get_info()
    return int(free)


class PinnedStager:
    """A reusable page-locked host buffer: CPU tensors are stacked into it, then copied to the
    GPU without blocking the host (one buffer per embedder, guarded by a lock)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._buffer = None
        self._copied = None  # a CUDA event: the copy out of the buffer has finished

    def to_device(self, tensors, device: str, dtype):
        import torch

        first = tensors[0]
        shape = (len(tensors), *first.shape)
        with self._lock:
            if self._copied is not None:  # the last copy out of the buffer must be done
                self._copied.synchronize()
            buffer = self._buffer
            if (
                buffer is None
                or buffer.shape[1:] != shape[1:]
                or buffer.shape[0] < shape[0]
                or buffer.dtype != first.dtype
            ):
                self._buffer = buffer = torch.empty(shape, dtype=first.dtype, pin_memory=True)
            staged = buffer[: shape[0]]
            torch.stack(list(tensors), out=staged)
            on_device = staged.to(device, dtype=dtype, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()
        return on_device
