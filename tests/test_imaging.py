"""Decoding: every mode to RGB, EXIF orientation, draft decode, formats by content."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imagegen import huge_png_header
from PIL import Image

from visualfinder.errors import ImageDecodeError
from visualfinder.ingest.imaging import (
    content_hash,
    crop_region,
    decode_image,
    is_candidate_name,
    is_ignored_name,
)


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_camera_size_jpeg_is_draft_decoded_at_reduced_size_but_reports_full_size():
    data = _encode(Image.new("RGB", (4000, 3000), (10, 200, 30)), "JPEG", quality=80)
    decoded = decode_image(data, min_side=256)
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert min(decoded.image.size) >= 256 and decoded.image.size[0] <= 1000
    assert decoded.image.mode == "RGB" and decoded.format == "JPEG"


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    decoded = decode_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95), min_side=16)
    assert (decoded.width, decoded.height) == (100, 200)
    pixels = np.asarray(decoded.image)
    h, w = pixels.shape[:2]
    assert h > w
    top, bottom = pixels[h // 8, w // 2], pixels[7 * h // 8, w // 2]
    assert top[2] > 150 and top[0] < 100  # the blue half is on top after rotation
    assert bottom[0] > 150 and bottom[2] < 100


def test_corrupted_exif_does_not_cost_the_image():
    data = bytearray(_encode(Image.new("RGB", (64, 64), "red"), "JPEG", exif=b"Exif\x00\x00MM\x00*garbage"))
    decoded = decode_image(bytes(data), min_side=16)
    assert (decoded.width, decoded.height) == (64, 64)


@pytest.mark.parametrize(
    "make",
    [
        lambda: (Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG", {}),
        lambda: (Image.new("I;16", (40, 30), 40000), "PNG", {}),
        lambda: (Image.new("LA", (40, 30), (128, 100)), "PNG", {}),
        lambda: (Image.new("1", (40, 30), 1), "BMP", {}),
        lambda: (Image.new("RGBA", (40, 30), (255, 0, 0, 0)), "WEBP", {"lossless": True}),
        lambda: (Image.new("RGB", (40, 30), "green"), "TIFF", {}),
    ],
    ids=["cmyk-jpeg", "16bit-png", "la-png", "1bit-bmp", "rgba-webp", "tiff"],
)
def test_every_mode_becomes_rgb(make):
    img, fmt, kwargs = make()
    decoded = decode_image(_encode(img, fmt, **kwargs), min_side=16)
    assert decoded.image.mode == "RGB" and decoded.image.size == (40, 30)


def test_transparency_is_flattened_onto_white():
    img = Image.new("P", (20, 20), 0)
    img.putpalette([255, 0, 0] * 256)
    img.info["transparency"] = 0
    decoded = decode_image(_encode(img, "PNG", transparency=0), min_side=8)
    assert tuple(np.asarray(decoded.image)[10, 10]) == (255, 255, 255)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (30, 30), c) for c in ("red", "blue", "green")]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    pixel = np.asarray(decode_image(data, min_side=8).image)[15, 15]
    assert pixel[0] > 200 and pixel[2] < 50


def test_format_comes_from_content_not_extension():
    png_bytes = _encode(Image.new("RGB", (20, 20), "red"), "PNG")
    assert decode_image(png_bytes, path="photo.jpg", min_side=8).format == "PNG"


def test_pixel_limit_guards_against_decompression_bombs():
    data = huge_png_header(20000, 20000)
    with pytest.raises(ImageDecodeError, match="too large to decode safely"):
        decode_image(data, max_pixels=100_000_000)


def test_names_that_are_temporary_or_hidden_are_ignored():
    assert is_candidate_name("chair.JPG") and is_candidate_name("lamp.webp")
    for name in (
        ".hidden.jpg",
        "photo.jpg.part",
        "photo.jpg.crdownload",
        "photo.jpg~",
        "notes.txt",
        "~$x.jpg",
    ):
        assert not is_candidate_name(name), name
    assert is_ignored_name(".DS_Store")


def test_crop_accepts_pixels_and_fractions():
    img = Image.new("RGB", (400, 200), "white")
    decoded = decode_image(_encode(img, "PNG"), min_side=8)
    assert crop_region(decoded, (0, 0, 200, 100)).image.size == (200, 100)
    assert crop_region(decoded, (0.5, 0.5, 0.5, 0.5)).image.size == (200, 100)


def test_content_hash_is_stable_and_content_based():
    assert content_hash(b"abc") == content_hash(b"abc") != content_hash(b"abd")
