"""A demo catalog of drawn product shots (mugs, lamps, chairs...) for screenshots and trying the app."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

COLOURS = {
    "red": (205, 52, 48), "blue": (44, 96, 196), "teal": (28, 150, 140), "yellow": (236, 186, 52),
    "black": (40, 40, 44), "green": (70, 140, 70), "orange": (232, 120, 40), "pink": (222, 120, 160),
}  # fmt: skip
PRODUCTS = ("mug", "lamp", "chair", "sneaker", "bottle", "vase", "clock", "backpack")
TAGS = {"mug": ["kitchen", "ceramic"], "lamp": ["lighting"], "chair": ["furniture"], "sneaker": ["shoes"],
        "bottle": ["kitchen"], "vase": ["ceramic", "decor"], "clock": ["decor"], "backpack": ["bags"]}  # fmt: skip
SIZE = 480
_SCALE = 2  # draw at twice the size, then downsample: smooth edges without an antialiasing API


def draw_product(
    kind: str, colour: tuple[int, int, int], seed: int, background: tuple[int, int, int] | None = None
) -> Image.Image:
    """One product shot: the object, a soft shadow and a light studio background."""
    rng = random.Random(seed)
    s = SIZE * _SCALE
    bg = background or (246 - rng.randint(0, 10), 245 - rng.randint(0, 10), 242 - rng.randint(0, 8))
    image = Image.new("RGB", (s, s), bg)
    shadow = Image.new("L", (s, s), 0)
    ImageDraw.Draw(shadow).ellipse((s * 0.22, s * 0.80, s * 0.78, s * 0.90), fill=90)
    shade = tuple(max(0, c - 60) for c in bg)
    image.paste(Image.new("RGB", (s, s), shade), mask=shadow.filter(ImageFilter.GaussianBlur(s * 0.03)))
    draw = ImageDraw.Draw(image)
    dark = tuple(max(0, int(c * 0.62)) for c in colour)
    light = tuple(min(255, int(c + (255 - c) * 0.45)) for c in colour)
    dx = rng.uniform(-0.04, 0.04) * s
    _SHAPES[kind](draw, s, colour, dark, light, dx, rng)
    return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def _mug(d, s, c, dark, light, dx, rng):
    x0, x1, y0, y1 = s * 0.30 + dx, s * 0.62 + dx, s * 0.36, s * 0.84
    d.ellipse(
        (x1 - s * 0.07, y0 + s * 0.09, x1 + s * 0.13, y0 + s * 0.33), outline=dark, width=int(s * 0.035)
    )
    d.rounded_rectangle((x0, y0, x1, y1), radius=s * 0.04, fill=c)
    d.ellipse((x0, y0 - s * 0.03, x1, y0 + s * 0.04), fill=dark)
    d.rectangle((x0 + s * 0.03, y0 + s * 0.06, x0 + s * 0.06, y1 - s * 0.05), fill=light)


def _lamp(d, s, c, dark, light, dx, rng):
    cx = s * 0.5 + dx
    d.polygon(
        [
            (cx - s * 0.12, s * 0.18),
            (cx + s * 0.12, s * 0.18),
            (cx + s * 0.22, s * 0.44),
            (cx - s * 0.22, s * 0.44),
        ],
        fill=c,
    )
    d.rectangle((cx - s * 0.012, s * 0.44, cx + s * 0.012, s * 0.80), fill=(90, 90, 95))
    d.ellipse((cx - s * 0.14, s * 0.78, cx + s * 0.14, s * 0.86), fill=dark)
    d.polygon(
        [
            (cx - s * 0.09, s * 0.2),
            (cx - s * 0.05, s * 0.2),
            (cx - s * 0.12, s * 0.42),
            (cx - s * 0.17, s * 0.42),
        ],
        fill=light,
    )


def _chair(d, s, c, dark, light, dx, rng):
    x0 = s * 0.30 + dx
    leg = int(s * 0.025)
    for x in (x0 + s * 0.02, x0 + s * 0.36):
        d.line((x, s * 0.58, x, s * 0.86), fill=(120, 84, 52), width=leg)
    d.rounded_rectangle((x0, s * 0.16, x0 + s * 0.40, s * 0.50), radius=s * 0.05, fill=c)
    d.rounded_rectangle((x0 - s * 0.02, s * 0.50, x0 + s * 0.42, s * 0.60), radius=s * 0.03, fill=dark)
    d.rounded_rectangle((x0 + s * 0.04, s * 0.2, x0 + s * 0.09, s * 0.46), radius=s * 0.02, fill=light)


def _sneaker(d, s, c, dark, light, dx, rng):
    x0 = s * 0.16 + dx
    d.rounded_rectangle(
        (x0, s * 0.66, x0 + s * 0.68, s * 0.74),
        radius=s * 0.03,
        fill=(236, 236, 236),
        outline=(200, 200, 200),
    )
    d.polygon([(x0 + s * 0.02, s * 0.66), (x0 + s * 0.06, s * 0.44), (x0 + s * 0.28, s * 0.40), (x0 + s * 0.40, s * 0.52),
               (x0 + s * 0.62, s * 0.58), (x0 + s * 0.68, s * 0.66)], fill=c)  # fmt: skip
    for i in range(4):
        x = x0 + s * (0.20 + 0.05 * i)
        d.line(
            (x, s * 0.44 + i * s * 0.02, x + s * 0.05, s * 0.48 + i * s * 0.02),
            fill=light,
            width=int(s * 0.012),
        )
    d.ellipse((x0 + s * 0.05, s * 0.46, x0 + s * 0.13, s * 0.54), fill=dark)


def _bottle(d, s, c, dark, light, dx, rng):
    cx = s * 0.5 + dx
    d.rounded_rectangle((cx - s * 0.05, s * 0.14, cx + s * 0.05, s * 0.22), radius=s * 0.015, fill=dark)
    d.rounded_rectangle((cx - s * 0.045, s * 0.2, cx + s * 0.045, s * 0.32), radius=s * 0.01, fill=c)
    d.rounded_rectangle((cx - s * 0.12, s * 0.30, cx + s * 0.12, s * 0.85), radius=s * 0.06, fill=c)
    d.rounded_rectangle(
        (cx - s * 0.12, s * 0.48, cx + s * 0.12, s * 0.62), radius=s * 0.01, fill=(250, 250, 248)
    )
    d.rectangle((cx - s * 0.09, s * 0.34, cx - s * 0.06, s * 0.8), fill=light)


def _vase(d, s, c, dark, light, dx, rng):
    cx = s * 0.5 + dx
    d.ellipse((cx - s * 0.19, s * 0.40, cx + s * 0.19, s * 0.86), fill=c)
    d.rectangle((cx - s * 0.07, s * 0.2, cx + s * 0.07, s * 0.48), fill=c)
    d.ellipse((cx - s * 0.10, s * 0.17, cx + s * 0.10, s * 0.24), fill=dark)
    d.ellipse((cx - s * 0.13, s * 0.50, cx - s * 0.07, s * 0.72), fill=light)


def _clock(d, s, c, dark, light, dx, rng):
    cx, cy, r = s * 0.5 + dx, s * 0.48, s * 0.27
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c)
    d.ellipse((cx - r * 0.82, cy - r * 0.82, cx + r * 0.82, cy + r * 0.82), fill=(250, 250, 246))
    for i in range(12):
        a = i * math.pi / 6
        d.line((cx + math.cos(a) * r * 0.68, cy + math.sin(a) * r * 0.68, cx + math.cos(a) * r * 0.76,
                cy + math.sin(a) * r * 0.76), fill=dark, width=int(s * 0.01))  # fmt: skip
    hour, minute = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
    d.line(
        (cx, cy, cx + math.cos(hour) * r * 0.4, cy + math.sin(hour) * r * 0.4),
        fill=(30, 30, 30),
        width=int(s * 0.018),
    )
    d.line(
        (cx, cy, cx + math.cos(minute) * r * 0.6, cy + math.sin(minute) * r * 0.6),
        fill=(30, 30, 30),
        width=int(s * 0.011),
    )


def _backpack(d, s, c, dark, light, dx, rng):
    x0 = s * 0.30 + dx
    d.arc((x0 + s * 0.1, s * 0.12, x0 + s * 0.3, s * 0.30), 180, 360, fill=dark, width=int(s * 0.025))
    d.rounded_rectangle((x0, s * 0.2, x0 + s * 0.40, s * 0.84), radius=s * 0.09, fill=c)
    d.rounded_rectangle((x0 + s * 0.06, s * 0.52, x0 + s * 0.34, s * 0.78), radius=s * 0.05, fill=dark)
    d.line((x0 + s * 0.08, s * 0.56, x0 + s * 0.32, s * 0.56), fill=light, width=int(s * 0.01))


_SHAPES = {"mug": _mug, "lamp": _lamp, "chair": _chair, "sneaker": _sneaker, "bottle": _bottle, "vase": _vase,
           "clock": _clock, "backpack": _backpack}  # fmt: skip


def write_demo_catalog(root: Path, colours_per_product: int = 6) -> list[Path]:
    """Write product shots named like a shop's files (`mug-red.jpg`); returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    paths = []
    for p, kind in enumerate(PRODUCTS):
        for i in range(colours_per_product):
            colour = names[(p * 3 + i) % len(names)]
            path = root / kind / f"{kind}-{colour}.jpg"
            path.parent.mkdir(exist_ok=True)
            draw_product(kind, COLOURS[colour], seed=p * 100 + i).save(path, "JPEG", quality=90)
            paths.append(path)
    return paths


def query_photo(kind: str = "mug", colour: str = "red") -> Image.Image:
    """A 'customer photo' of a catalog product: another background and placement."""
    return draw_product(kind, COLOURS[colour], seed=4242, background=(226, 232, 238))


NAMES = {"mug": "Ceramic mug", "lamp": "Table lamp", "chair": "Dining chair", "sneaker": "Canvas sneaker",
         "bottle": "Glass bottle", "vase": "Stoneware vase", "clock": "Wall clock", "backpack": "Day backpack"}  # fmt: skip
PRICES = {
    "mug": 14,
    "lamp": 59,
    "chair": 129,
    "sneaker": 79,
    "bottle": 9,
    "vase": 39,
    "clock": 45,
    "backpack": 69,
}


def write_demo_products(paths: list[Path], dest: Path) -> Path:
    """A product sheet for the demo catalog (file, sku, title, price, tags), as a shop exports it."""
    with dest.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "sku", "title", "price", "tags"])
        for i, path in enumerate(paths):
            kind, colour = path.stem.split("-", 1)
            writer.writerow([path.name, f"{kind[:2].upper()}-{100 + i}", f"{NAMES[kind]}, {colour}",
                             f"{PRICES[kind] + (i % 5) * 2 - 0.01:.2f}", ";".join(TAGS[kind])])  # fmt: skip
    return dest
