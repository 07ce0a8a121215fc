"""JPEGs decoded on the CUDA device in batches, resized, normalised and thumbnailed there.

The pipeline's decode threads read and hash each file as always; a baseline RGB or greyscale
JPEG within the size limits (`gpu_jpeg_plan`) is then queued here, and one thread gathers what
the decode threads queued into one `torchvision.io.decode_jpeg(..., device="cuda")` call. From
the decoded image, on the GPU: EXIF orientation, the model's input (the recipe's resize, crop
and normalisation: `model_input`) and the thumbnail's pixels (`thumbnail_pixels`), which the
waiting decode thread encodes and writes. Everything else (PNGs, progressive or CMYK JPEGs, huge
images, files nvJPEG refuses) goes to the fallback decoder (processes) with its guards.

The vectors are not bit-identical to the CPU path's: that one decodes a JPEG at a reduced DCT
scale (draft) before resizing, this one resizes the full image with an antialiased bicubic
filter. tests/benchmarks/gpu_throughput.py reports their agreement.
"""

from __future__ import annotations

import io
import logging
import math
import queue
import threading
import time
import warnings
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from visualfinder.errors import Cancelled
from visualfinder.ingest.imaging import _exif_orientation, jpeg_scan_count, thumbnail_path, write_thumbnail
from visualfinder.ingest.process_pool import Offloaded
from visualfinder.ingest.workpool import TaskTimedOut, current_task_started
from visualfinder.models.pixels import PixelRecipe, aspect_box, resized_size
from visualfinder.models.preprocess import centre_crop_box

log = logging.getLogger(__name__)

# Beyond this the CPU's draft decode is cheaper, and a batch's VRAM stays bounded
# (a 64 MP image is 192 MB decoded).
MAX_GPU_PIXELS = 64_000_000
MAX_GPU_SIDE = 16_384
# Files per decode_jpeg call, and how long the first one waits for company.
MAX_BATCH = 32
GATHER_S = 0.004
_POLL_S = 0.2


def gpu_decode_available() -> bool:
    """torchvision with batched decode_jpeg on a device (0.19+) and a CUDA GPU."""
    try:
        import torch
        import torchvision
        import torchvision.io  # noqa: F401
    except ImportError:
        return False
    version = tuple(int(p) for p in torchvision.__version__.split("+")[0].split(".")[:2])
    return version >= (0, 19) and torch.cuda.is_available()


@dataclass(frozen=True)
class JpegPlan:
    """What the header says about a JPEG the GPU will decode."""

    width: int  # as stored, before orientation
    height: int
    orientation: int
    format: str


def gpu_jpeg_plan(data: bytes, max_pixels: int) -> JpegPlan | None:
    """The plan for a file the GPU decodes, or None for the CPU path: only baseline (one scan)
    RGB or greyscale JPEGs within the pixel limits; the header is parsed, nothing decoded."""
    if data[:3] != b"\xff\xd8\xff" or jpeg_scan_count(data) != 1:
        return None
    try:
        img = JpegImagePlugin.jpeg_factory(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - whatever the header's problem, the CPU path names it
        return None
    width, height = img.size
    if img.mode not in ("RGB", "L") or width < 1 or height < 1:
        return None
    if width * height > min(max_pixels, MAX_GPU_PIXELS) or max(width, height) > MAX_GPU_SIDE:
        return None
    return JpegPlan(width, height, _exif_orientation(img), img.format or "JPEG")


def orient(image, orientation: int):
    """A (C, H, W) tensor turned upright as Pillow's transposes do for EXIF orientations 2-8."""
    import torch

    if orientation == 2:
        return image.flip(2)
    if orientation == 3:
        return torch.rot90(image, 2, (1, 2))
    if orientation == 4:
        return image.flip(1)
    if orientation == 5:
        return image.transpose(1, 2)
    if orientation == 6:
        return torch.rot90(image, -1, (1, 2))
    if orientation == 7:
        return torch.rot90(image.transpose(1, 2), 2, (1, 2))
    if orientation == 8:
        return torch.rot90(image, 1, (1, 2))
    return image


def _resample(image, width: int, height: int):
    """uint8 (C, H, W) -> uint8 (C, height, width), antialiased bicubic as Pillow's resize."""
    import torch

    if image.shape[1:] == (height, width):
        return image
    resized = torch.nn.functional.interpolate(
        image[None].float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )[0]
    return resized.clamp_(0, 255).round_().to(torch.uint8)


def model_input(image, recipe: PixelRecipe):
    """uint8 (3, H, W) upright image -> float32 normalised model input, on the image's device."""
    import torch

    _, h, w = image.shape
    if recipe.max_aspect is not None:
        left, top, right, bottom = aspect_box(w, h, recipe.max_aspect)
        image = image[:, top:bottom, left:right]
        h, w = bottom - top, right - left
    new_w, new_h = resized_size(w, h, recipe)
    image = _resample(image, new_w, new_h)
    if recipe.crop is not None:
        left, top, right, bottom = centre_crop_box(new_w, new_h, *recipe.crop)
        image = image[:, top:bottom, left:right]
    mean = torch.tensor(recipe.mean, device=image.device).view(-1, 1, 1)
    std = torch.tensor(recipe.std, device=image.device).view(-1, 1, 1)
    return (image.float() / 255.0 - mean) / std


def thumbnail_fit(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) Pillow's Image.thumbnail((size, size)) gives an image of this size."""
    if width <= size and height <= size:
        return width, height
    aspect = width / height
    x, y = size, size
    if x / y >= aspect:
        x = max(min(math.floor(y * aspect), math.ceil(y * aspect), key=lambda n: abs(aspect - n / y)), 1)
    else:
        y = max(min(math.floor(x / aspect), math.ceil(x / aspect),
                    key=lambda n: 0 if n == 0 else abs(aspect - x / n)), 1)  # fmt: skip
    return x, y


def thumbnail_pixels(image, size: int):
    """uint8 (3, H, W) image -> uint8 (3, h, w) thumbnail pixels, on the image's device."""
    _, h, w = image.shape
    return _resample(image, *thumbnail_fit(w, h, size))


@dataclass(eq=False)
class _Item:
    data: bytes
    plan: JpegPlan
    future: Future = field(default_factory=Future)


class GpuJpegDecoder:
    """Batches the decode threads' JPEGs onto the GPU; other files go to `fallback`."""

    def __init__(self, recipe: PixelRecipe, device: str, *, decode_side: int, max_pixels: int,
                 thumbnail_size: int, thumbs_dir: Path, fallback=None, max_batch: int = MAX_BATCH):  # fmt: skip
        self.recipe, self.device = recipe, device
        self.max_pixels, self.thumbnail_size, self.thumbs_dir = max_pixels, thumbnail_size, thumbs_dir
        self.fallback = fallback
        self.max_batch = max_batch
        self.decoded = 0  # files the GPU decoded (the rest: fallback)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        # torchvision 0.29 deprecates its image codecs for TorchCodec's; they are what ships today.
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision",
                                DeprecationWarning)  # fmt: skip
        self._thread = threading.Thread(target=self._loop, name="vf-gpu-decode", daemon=True)
        self._thread.start()

    def decode(self, path: str, data: bytes, digest: str, limit: float | None) -> Offloaded | None:
        plan = gpu_jpeg_plan(data, self.max_pixels)
        if plan is None:
            return self._fall_back(path, data, digest, limit)
        item = _Item(data, plan)
        self._queue.put(item)
        started = current_task_started() or time.monotonic()
        while True:
            try:
                done = item.future.result(timeout=_POLL_S)
                break
            except FutureTimeout:
                if self._closed:
                    raise Cancelled("indexing cancelled") from None
                if limit is not None and time.monotonic() - started >= limit:
                    raise TaskTimedOut(time.monotonic() - started) from None
        if done is None:  # nvJPEG refused it: the CPU path decodes it, or names what is wrong
            return self._fall_back(path, data, digest, limit)
        tensor, thumb, width, height = done
        # Encoding the small thumbnail is CPU work: here, in parallel across the decode threads.
        pixels = thumb.permute(1, 2, 0).cpu().numpy()
        dest = write_thumbnail(Image.fromarray(np.ascontiguousarray(pixels)), self.thumbnail_size,
                               thumbnail_path(self.thumbs_dir, digest))  # fmt: skip
        return Offloaded(digest, width, height, plan.format, str(dest), tensor)

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(30)
        if self.fallback is not None:
            self.fallback.close()

    def _fall_back(self, path: str, data: bytes, digest: str, limit: float | None) -> Offloaded | None:
        return self.fallback.decode(path, data, digest, limit) if self.fallback is not None else None

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            gather_until = time.monotonic() + GATHER_S
            while len(batch) < self.max_batch:
                remaining = gather_until - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=max(0.0, remaining))
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        encoded = [torch.from_numpy(np.frombuffer(item.data, dtype=np.uint8).copy()) for item in batch]
        try:
            images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except Exception:  # noqa: BLE001 - one bad file fails the batched call: each goes alone
            images = []
            for data in encoded:
                try:
                    images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
                except Exception:  # noqa: BLE001 - the CPU path will say what is wrong with it
                    images.append(None)
        for item, image in zip(batch, images, strict=True):
            if image is None:
                item.future.set_result(None)
                continue
            try:
                upright = orient(image, item.plan.orientation)
                _, height, width = upright.shape
                tensor = model_input(upright, self.recipe)
                thumb = thumbnail_pixels(upright, self.thumbnail_size)
            except Exception:  # noqa: BLE001 - e.g. out of memory: the CPU path takes the file
                log.exception("GPU preprocessing failed; the file goes to the CPU decoder")
                item.future.set_result(None)
                continue
            self.decoded += 1
            item.future.set_result((tensor, thumb, width, height))
