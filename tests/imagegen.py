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


def studio_image(
    seed: int,
    colour: tuple[int, int, int] | None = None,
    extra_item: bool = False,
    size: tuple[int, int] = (640, 480),
) -> Image.Image:
    """A product shot: plain backdrop, floor, and a sofa-like product whose shape follows `seed`.

    `colour` gives the same product in another colour; `extra_item` puts a lamp beside it:
    look-alikes that are not the same picture.
    """
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, (235, 233, 228))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, int(h * 0.72), w, h), fill=(200, 196, 188))
    body = colour or rng.choice(PALETTE[:9])
    x0, x1 = int(w * rng.uniform(0.12, 0.25)), int(w * rng.uniform(0.75, 0.88))
    seat, top = int(h * rng.uniform(0.5, 0.58)), int(h * rng.uniform(0.25, 0.38))
    draw.rectangle((x0, top, x1, seat), fill=body)  # back
    draw.rectangle((x0 - 20, seat, x1 + 20, int(h * 0.7)), fill=body)  # seat
    for x in (x0 - 30, x1 + 10):  # arms
        draw.rounded_rectangle((x, int(h * 0.45), x + 40, int(h * 0.7)), 12, fill=body)
    for x in (x0, x1 - 12):  # legs
        draw.rectangle((x, int(h * 0.7), x + 12, int(h * 0.76)), fill=(60, 40, 30))
    for _ in range(rng.randint(1, 3)):  # cushions
        cx = rng.randint(x0 + 30, x1 - 30)
        draw.ellipse((cx - 40, seat - 70, cx + 40, seat - 5), fill=rng.choice(PALETTE))
    if extra_item:
        draw.rectangle((int(w * 0.9), int(h * 0.3), int(w * 0.92), int(h * 0.72)), fill=(40, 40, 40))
        draw.polygon([(int(w * 0.86), int(h * 0.32)), (int(w * 0.91), int(h * 0.18)), (int(w * 0.96), int(h * 0.32))],
                     fill=(250, 220, 120))  # fmt: skip
    return img
