"""Is it the same picture? Perceptual hashes and an alignment-tolerant pixel comparison.

Two checks, cheap first, both on the 256 px thumbnails the pipeline already wrote:

1. **Window pHashes** (stored per content hash): the 63-bit DCT pHash of the whole image and
   of 15 crop windows (95 % of the width and/or height at three offsets). A copy cropped by up
   to about 5 % per side matches one image's full hash against a window of the other's, so
   crops, resizes, recompression and format changes stay within a few bits while distinct
   pictures differ by 16 or more (measured on generated images; see tests/test_duplicates.py).
2. **Aligned colour difference** (computed for pairs that pass the hash): the crop between the
   two is estimated from row and column colour profiles, both images are reduced to the
   aligned 16 x 16 pixels, and the largest mean colour difference of a 4 x 4 cell is taken. The
   pHash is grayscale and coarse; this catches a recoloured product or an added object.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
from PIL import Image

from visualfinder.errors import ImageDecodeError
from visualfinder.ingest.imaging import decode_file

HASH_SIZE = 32
# Per axis: (scale, offset) of a window. The first window (1, 0) x (1, 0) is the whole image.
_AXIS = ((1.0, 0.0), (0.95, 0.0), (0.95, 0.025), (0.95, 0.05))
WINDOWS = tuple((ox, oy, sx, sy) for (sx, ox), (sy, oy) in itertools.product(_AXIS, _AXIS))
FINGERPRINT_BYTES = 8 * len(WINDOWS)
# Thresholds measured on generated copies and look-alikes (tests/test_duplicates.py): copies
# reach at most 6 bits and a cell difference of 9; distinct pictures 16+ bits, look-alikes
# (recoloured or changed product) a cell difference of 20+ where the change is visible.
MAX_HAMMING = 10
MAX_CELL_DIFFERENCE = 12.0
_DCT = np.cos(
    np.pi * (2 * np.arange(HASH_SIZE)[None, :] + 1) * np.arange(HASH_SIZE)[:, None] / (2 * HASH_SIZE)
)
_CROP_STEPS = np.arange(0.0, 0.0801, 0.005)  # per side, for the profile alignment
_PROFILE_SAMPLES = 64
SMALL_SIDE = 128


def fingerprint(image: Image.Image) -> bytes:
    """The window pHashes of an image (FINGERPRINT_BYTES bytes)."""
    gray = image.convert("L")
    w, h = gray.size
    hashes = []
    for ox, oy, sx, sy in WINDOWS:
        box = (round(ox * w), round(oy * h), round((ox + sx) * w), round((oy + sy) * h))
        pixels = np.asarray(
            gray.crop(box).resize((HASH_SIZE, HASH_SIZE), Image.Resampling.BOX), dtype=np.float64
        )
        coefficients = (_DCT @ pixels @ _DCT.T)[:8, :8].ravel()[1:]  # low frequencies, no DC
        bits = coefficients > np.median(coefficients)
        hashes.append(int(np.packbits(np.append(bits, False)).view(">u8")[0]))
    return np.array(hashes, dtype=">u8").tobytes()


def hash_distance(a: bytes, b: bytes) -> int:
    """Fewest differing bits between one image's whole-image hash and the other's windows."""
    ha = np.frombuffer(a, dtype=">u8")
    hb = np.frombuffer(b, dtype=">u8")
    return min(_popcount(ha ^ hb[0]).min(), _popcount(hb ^ ha[0]).min())


def cell_difference(a: np.ndarray, b: np.ndarray, good_enough: float = -1.0) -> float:
    """Largest 4 x 4-cell mean colour difference (0-255) after aligning a possible crop, either
    way (the second way is skipped when the first is already at most `good_enough`)."""
    first = _aligned(a, b)
    return first if first <= good_enough else min(first, _aligned(b, a))


def same_picture(fp_a: bytes, fp_b: bytes, small_a: np.ndarray | None, small_b: np.ndarray | None) -> bool:
    """Both checks (the pixel check only runs when the hashes agree and both images are at hand)."""
    if hash_distance(fp_a, fp_b) > MAX_HAMMING:
        return False
    if small_a is None or small_b is None:
        return False
    return cell_difference(small_a, small_b, MAX_CELL_DIFFERENCE) <= MAX_CELL_DIFFERENCE


def load_small(thumb_path: str | None, source_path: str, max_pixels: int) -> Image.Image | None:
    """An RGB image of about SMALL_SIDE px: the thumbnail, else the original file; None if neither reads."""
    for path, is_thumb in ((thumb_path, True), (source_path, False)):
        if not path or not os.path.exists(path):
            continue
        try:
            if is_thumb:
                with Image.open(path) as img:
                    image = img.convert("RGB")
            else:
                image = decode_file(path, min_side=SMALL_SIDE * 2, max_pixels=max_pixels).image
        except (OSError, ValueError, ImageDecodeError):
            continue
        image.thumbnail((SMALL_SIDE * 2, SMALL_SIDE * 2), Image.Resampling.BOX)
        return image
    return None


def as_array(image: Image.Image) -> np.ndarray:
    small = image.copy()
    small.thumbnail((SMALL_SIDE, SMALL_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def _aligned(container: np.ndarray, part: np.ndarray) -> float:
    """Difference between `part` and the region of `container` it most likely was cropped from."""
    top, bottom = _fit(container.mean(axis=1), part.mean(axis=1))
    h, w = container.shape[:2]
    rows = container[round(top * h) : h - round(bottom * h)]
    left, right = _fit(rows.mean(axis=0), part.mean(axis=0))
    cols = container[:, round(left * w) : w - round(right * w)]
    top, bottom = _fit(cols.mean(axis=1), part.mean(axis=1))
    # Sub-pixel box: at thumbnail scale one pixel is about 1 % of the picture.
    a = _reduce(container, (left * w, top * h, w - right * w, h - bottom * h))
    b = _reduce(part, None)
    return float(np.abs(a - b).reshape(4, 4, 4, 4, 3).mean(axis=(1, 3)).max())


def _fit(profile: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Crop fractions (start, end) of `profile` whose resampling best matches `target`."""
    u = (np.arange(_PROFILE_SAMPLES) + 0.5) / _PROFILE_SAMPLES
    xp = (np.arange(len(profile)) + 0.5) / len(profile)
    xt = (np.arange(len(target)) + 0.5) / len(target)
    wanted = np.stack([np.interp(u, xt, target[:, c]) for c in range(3)], axis=1)
    starts, ends = np.meshgrid(_CROP_STEPS, _CROP_STEPS, indexing="ij")
    starts, ends = starts.ravel(), ends.ravel()
    positions = starts[:, None] + u[None, :] * (1 - starts - ends)[:, None]
    sampled = np.stack([np.interp(positions, xp, profile[:, c]) for c in range(3)], axis=2)
    best = int(np.abs(sampled - wanted[None]).mean(axis=(1, 2)).argmin())
    return float(starts[best]), float(ends[best])


def _reduce(pixels: np.ndarray, box: tuple[float, float, float, float] | None) -> np.ndarray:
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return np.asarray(image.resize((16, 16), Image.Resampling.BOX, box=box), dtype=np.float32)


def _popcount(values: np.ndarray) -> np.ndarray:
    as_bytes = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)
