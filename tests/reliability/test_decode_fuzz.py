"""Fuzzing the decoder: mutated JPEG/PNG/WebP/GIF/TIFF/BMP bytes either decode or raise ImageDecodeError.

Anything else (an exception type the pipeline does not expect, a crash, a hang) is a bug in
imaging.py. Two fuzzers: hypothesis (shrinks a failure to a small example) and a seeded
structure-aware mutator (header fields, spliced segments) for volume. What decodes also goes
through the thumbnailer and the model's preprocessing, as in the pipeline.
"""

from __future__ import annotations

import io
import struct
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagegen import product_image
from PIL import Image
from rel_harness import rng_for, scaled

from visualfinder.errors import ImageDecodeError
from visualfinder.ingest.imaging import decode_image, make_thumbnail
from visualfinder.models.embedder import Embedder

MIN_SIDE = 64
MAX_PIXELS = 20_000_000  # small, so mutated headers hit the guard often without using much memory
SLOW_CASE_S = 10.0  # nothing may take this long (generous: the machine is shared)


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    base = product_image(3, (64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Maker"
    frames = [product_image(i, (32, 24)) for i in range(3)]
    deep = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return {
        "jpeg": _encode(base, "JPEG", quality=80),
        "jpeg-progressive": _encode(base, "JPEG", progressive=True, quality=70),
        "jpeg-exif": _encode(base, "JPEG", exif=exif.tobytes()),
        "jpeg-cmyk": _encode(base.convert("CMYK"), "JPEG"),
        "jpeg-gray": _encode(base.convert("L"), "JPEG"),
        "png": _encode(base, "PNG"),
        "png-16bit": _encode(Image.fromarray(deep), "PNG"),
        "png-palette-alpha": _encode(palette, "PNG", transparency=0),
        "png-rgba-interlaced": _encode(base.convert("RGBA"), "PNG", interlace=1),
        "webp": _encode(base, "WEBP", quality=80),
        "webp-lossless": _encode(base, "WEBP", lossless=True),
        "webp-animated": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50),
        "gif-animated": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        "tiff": _encode(base, "TIFF"),
        "bmp": _encode(base, "BMP"),
    }


SEEDS = _seeds()
INTERESTING = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\xff\xff",
               b"\xff\xff", b"\x00\x01", b"\xff\xd8", b"\xff\xda", b"\xff\xd9", b"IDAT", b"IEND", b"VP8X"]  # fmt: skip


@pytest.fixture(scope="module")
def embedder():
    return Embedder("vf-tiny", "none", "cpu").load()


class Outcomes:
    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.counts: Counter = Counter()
        self.slowest = 0.0

    def check(self, data: bytes, label: str) -> None:
        """Decode as the pipeline does; only ImageDecodeError may come out."""
        started = time.perf_counter()
        try:
            decoded = decode_image(data, min_side=MIN_SIDE, max_pixels=MAX_PIXELS, path=label)
        except ImageDecodeError as exc:
            assert exc.reason and "\n" not in exc.reason
            self.counts["refused"] += 1
        else:
            assert decoded.image.mode == "RGB" and min(decoded.image.size) >= 1
            assert decoded.width >= 1 and decoded.height >= 1
            make_thumbnail(decoded.image, 256)
            tensor = self.embedder.preprocess(decoded.image)
            assert tuple(tensor.shape) == (3, self.embedder.image_size, self.embedder.image_size)
            self.counts["decoded"] += 1
        elapsed = time.perf_counter() - started
        self.slowest = max(self.slowest, elapsed)
        assert elapsed < SLOW_CASE_S, f"{label}: {elapsed:.1f}s"


_mutation = st.tuples(
    st.sampled_from(["set", "flip", "delete", "insert", "truncate", "interesting", "duplicate"]),
    st.floats(0, 1, allow_nan=False),
    st.integers(0, 255),
    st.integers(1, 64),
)


def test_hypothesis_mutations_of_valid_images_decode_or_raise_image_decode_error(embedder):
    outcomes = Outcomes(embedder)

    @settings(max_examples=scaled(500, 20_000), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.sampled_from(sorted(SEEDS)), st.lists(_mutation, min_size=1, max_size=12))
    def fuzz(seed_name: str, mutations: list) -> None:
        data = bytearray(SEEDS[seed_name])
        for op, where, value, length in mutations:
            _apply(data, op, int(where * len(data)), value, length)
        outcomes.check(bytes(data), f"{seed_name}+{mutations}")

    fuzz()
    print(f"hypothesis: {dict(outcomes.counts)}, slowest {outcomes.slowest:.2f}s")
    assert outcomes.counts["decoded"] and outcomes.counts["refused"]


def test_seeded_structure_aware_mutations_decode_or_raise_image_decode_error(embedder):
    rng = rng_for("decode-fuzz")
    outcomes = Outcomes(embedder)
    names = sorted(SEEDS)
    cases = scaled(5000, 200_000)
    for case in range(cases):
        name = rng.choice(names)
        data = bytearray(SEEDS[name])
        for _ in range(rng.randint(1, 10)):
            op = rng.choice(["set", "flip", "delete", "insert", "truncate", "interesting", "duplicate", "splice",
                             "size"])  # fmt: skip
            if op == "splice":  # a piece of another file: segments and chunks of another format
                other = SEEDS[rng.choice(names)]
                at = rng.randrange(len(other))
                data[rng.randrange(len(data) + 1) :] = other[at : at + rng.randint(1, 2048)]
            elif op == "size":  # rewrite a 16/32-bit field near the start: widths, heights, lengths
                at = rng.randrange(min(len(data), 64)) if data else 0
                data[at : at + 4] = struct.pack(
                    ">I", rng.choice([0, 1, 0xFFFF, 0x7FFF, 40000, rng.randrange(1 << 32)])
                )
            else:
                _apply(data, op, rng.randrange(len(data) + 1), rng.randrange(256), rng.randint(1, 64), rng)
        outcomes.check(bytes(data), f"case {case} from {name}")
    print(f"seeded mutator: {cases} cases, {dict(outcomes.counts)}, slowest {outcomes.slowest:.2f}s")
    assert outcomes.counts["decoded"] and outcomes.counts["refused"]


def _apply(data: bytearray, op: str, at: int, value: int, length: int, rng=None) -> None:
    at = min(at, len(data))
    if op == "set" and at < len(data):
        data[at] = value
    elif op == "flip" and at < len(data):
        data[at] ^= 1 << (value % 8)
    elif op == "delete":
        del data[at : at + length]
    elif op == "insert":
        data[at:at] = bytes((value + i * 31) % 256 for i in range(length))
    elif op == "truncate":
        del data[at:]
    elif op == "interesting":
        token = INTERESTING[value % len(INTERESTING)] if rng is None else rng.choice(INTERESTING)
        data[at : at + len(token)] = token
    elif op == "duplicate" and data:
        start = (at * 7919) % len(data)
        data[at:at] = data[start : start + length * 16]
