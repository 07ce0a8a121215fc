"""Synthetic data for the benchmarks: embedding-like vectors and a catalog that holds them.

Uniform random vectors in 512-d have no meaningful neighbours (HNSW recall there says
nothing), so vectors come from a Gaussian mixture around a few thousand unit centres and are
normalised, like CLIP embeddings of a catalog with many products and a few shots of each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from visualfinder.catalog.store import Catalog, CatalogChanges, ImageWrite

CENTRES = 4096  # at 1M vectors: ~250 images per product/theme
# Noise norm relative to the unit centre: a point's cosine to its centre is ~0.7 and to the
# other members of its cluster ~0.5, to anything else ~0 (CLIP neighbours in a product
# catalog sit at ~0.5-0.9).
SIGMA = 1.0
CATALOG_ROOT = "/bench-catalog"
TOP_FOLDERS = 10  # each holds 10 % of the images
SUB_FOLDERS = 10  # each holds 1 %


def mixture(n: int, dim: int = 512, *, seed: int, centres: int = CENTRES, sigma: float = SIGMA,
            chunk: int = 65_536) -> Iterator[np.ndarray]:  # fmt: skip
    """Unit float32 vectors in chunks; the same centres for every seed, so queries match the base."""
    centre_rng = np.random.default_rng(12345)
    c = centre_rng.standard_normal((centres, dim), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = c[rng.integers(0, centres, m)]
        x += (sigma / np.sqrt(dim)) * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def centres_for(n: int) -> int:
    """Keep ~250 vectors per centre at every size, so a smaller run has the same local structure
    (with fewer vectors per centre than k, the true top-k would be noise at cosine ~0)."""
    return int(min(CENTRES, max(8, n // 244)))


def build_catalog(path: Path, n: int, model_key: str, dim: int = 512, seed: int = 1,
                  progress=None) -> np.ndarray:  # fmt: skip
    """A catalog of `n` embedded images in 100 folders (random placement); returns f16 vectors.

    Rows are real catalog rows written through Catalog.apply in large batches, as the
    pipeline writes them; the files do not exist on disk (a search never opens them).
    """
    catalog = Catalog(path)
    try:
        root = catalog.add_folder(CATALOG_ROOT)
        place = np.random.default_rng(seed + 1000).integers(0, TOP_FOLDERS * SUB_FOLDERS, n)
        stored = np.empty((n, dim), dtype=np.float16)
        done = 0
        for chunk in mixture(n, dim, seed=seed, centres=centres_for(n), chunk=20_000):
            changes = CatalogChanges()
            half = chunk.astype(np.float16)
            stored[done : done + len(chunk)] = half
            for j, vector in enumerate(half):
                i = done + j
                top, sub = divmod(int(place[i]), SUB_FOLDERS)
                changes.inserts.append(ImageWrite(
                    f"{CATALOG_ROOT}/d{top}/s{sub}/img_{i:07d}.jpg", root.id, 1000 + i, 1_700_000_000_000_000_000 + i,
                    content_hash=f"{i:032x}", width=4000, height=3000, format="JPEG", embedding=vector,
                    model_key=model_key, thumb_path=None,
                ))  # fmt: skip
            catalog.apply(changes)
            done += len(chunk)
            if progress is not None:
                progress(done, n)
        return stored
    finally:
        catalog.close()


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 131_072) -> np.ndarray:
    """Row indices of the exact top-k by cosine (inner product of unit vectors), best first."""
    q = np.asarray(queries, dtype=np.float32)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    for start in range(0, len(base), chunk):
        block = np.asarray(base[start : start + chunk], dtype=np.float32)
        s = q @ block.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_i


class Timer:
    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start


def camera_jpeg(path: Path, seed: int, size: tuple[int, int] = (4000, 3000), quality: int = 90) -> Path:
    """A camera-size JPEG with sensor-like noise (a flat drawing would compress to a few hundred
    KB and decode unrealistically fast; this one is ~3 MB, like a 12 MP phone photo)."""
    from imagegen import product_image
    from PIL import Image

    base = np.asarray(
        product_image(seed, (size[0] // 4, size[1] // 4)).resize(size, Image.BILINEAR), dtype=np.int16
    )
    noise = np.random.default_rng(seed).integers(-12, 13, base.shape, dtype=np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return path


def image_folder(root: Path, jpegs: int, pngs: int) -> list[Path]:
    """`jpegs` camera-size JPEGs and `pngs` small PNGs (web/product shots) in `root`, made once."""
    from imagegen import write_image

    files = []
    for i in range(jpegs):
        path = root / f"camera_{i:04d}.jpg"
        files.append(path if path.exists() else camera_jpeg(path, 1000 + i))
    for i in range(pngs):
        path = root / f"web_{i:04d}.png"
        files.append(path if path.exists() else write_image(path, 5000 + i, (800, 800)))
    return files
