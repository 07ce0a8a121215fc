"""Test images drawn with Pillow: distinct product-like pictures, written as real files."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

PALETTE = [(200, 30, 30), (30, 140, 60), (30, 60, 200), (230, 200, 40), (120, 40, 160), (20, 20, 20),
           (240, 130, 20), (90, 200, 220), (160, 100, 60), (250, 250, 250)]  # fmt: skip


def product_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A deterministic picture: background, a few shapes and stripes chosen by `seed`."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, rng.choice(PALETTE))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 6)):
        x0, y0 = rng.randint(0, w - 20), rng.randint(0, h - 20)
        x1, y1 = rng.randint(x0 + 10, w), rng.randint(y0 + 10, h)
        shape = rng.choice(["ellipse", "rectangle", "polygon"])
        colour = rng.choice(PALETTE)
        if shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    for i in range(rng.randint(0, 8)):
        x = rng.randint(0, w)
        draw.line((x, 0, x + rng.randint(-50, 50), h), fill=rng.choice(PALETTE), width=rng.randint(1, 6))
        del i
    return img


def write_image(
    path: Path, seed: int, size: tuple[int, int] = (320, 240), fmt: str | None = None, **save
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = product_image(seed, size)
    fmt = fmt or {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP",
                  "tif": "TIFF", "tiff": "TIFF"}[path.suffix.lower().lstrip(".")]  # fmt: skip
    if fmt == "JPEG":
        save.setdefault("quality", 90)
    img.save(path, fmt, **save)
    return path


def make_catalog(root: Path, count: int, start_seed: int = 0, ext: str = "jpg") -> list[Path]:
    """`count` distinct images directly in `root`."""
    return [write_image(root / f"product_{start_seed + i:04d}.{ext}", start_seed + i) for i in range(count)]


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims `width` x `height` pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
