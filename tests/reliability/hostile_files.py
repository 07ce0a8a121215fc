"""A generated corpus of hostile and unusual image files, each with what indexing must make of it.

`build_corpus(root)` writes the files and returns {path: Expect}: indexed (with checks on the
row), or skipped with a reason (a substring of the one-line reason recorded in the catalog).
The crafted bytes (bombs, a JPEG of 480 near-empty scans) are built here from Pillow output.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from imagegen import huge_png_header, product_image, write_image
from PIL import Image


@dataclass(frozen=True)
class Expect:
    indexed: bool
    reason: str = ""  # for a skipped file: part of its recorded reason
    size: tuple[int, int] | None = None  # for an indexed file: the (width, height) recorded


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header claims another size (a few hundred bytes claiming gigapixels)."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_frame_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A tiny GIF whose first frame claims `width` x `height` pixels beyond its logical screen.

    With disposal "restore to background", Pillow allocates and fills the frame while opening it.
    """
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF", disposal=2, duration=10))
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[pos] == 0x21:  # extension blocks: label, then sub-blocks up to a zero length
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C
    data[pos + 5 : pos + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def many_scans_jpeg(side: int, scans: int) -> bytes:
    """A valid grayscale progressive JPEG padded with near-empty AC scans (one EOB run each).

    Each scan is ~40 bytes but costs one pass over every block: libjpeg warns about the bogus
    progression and goes on, so a small file can keep a decoder busy for a long time.
    """
    base = encode(Image.new("L", (side, side), 128), "JPEG", progressive=True, quality=75)
    blocks = ((side + 7) // 8) ** 2
    # An AC table (class 1, id 1) with one code, "0", for symbol 0xE0: an EOB run of 2^14 + 14 bits.
    dht = b"\xff\xc4" + struct.pack(">H", 20) + b"\x11" + bytes([1] + [0] * 15) + b"\xe0"
    sos = b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x01" + bytes([63, 63, 0])
    runs = -(-blocks // 16384)
    body = bytes((runs * 15 + 7) // 8)  # each run: code 0 + 14 zero bits = 16384 blocks
    extra = scans - base.count(b"\xff\xda")
    return base[:-2] + dht + (sos + body) * extra + b"\xff\xd9"


def zlib_text_bomb_png() -> bytes:
    """A small valid PNG with a zTXt chunk that inflates to 64 MB."""
    png = encode(Image.new("RGB", (32, 32), (0, 128, 255)), "PNG")
    packer = zlib.compressobj(9)
    text = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()
    chunk = png_chunk(b"zTXt", b"comment\0\0" + text)
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


STALLED_FILE = "stalled_share.jpg"


def build_corpus(root: Path) -> dict[str, Expect]:
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, Expect] = {}

    def put(name: str | bytes, data: bytes, outcome: Expect) -> None:
        path = os.path.join(os.fsencode(root), name) if isinstance(name, bytes) else os.path.join(root, name)
        with open(path, "wb") as fh:
            fh.write(data)
        expect[os.fsdecode(path)] = outcome

    ok = Expect(True)
    picture = product_image(3, (120, 90))
    # --- unusual but valid: indexed -------------------------------------------------------
    for i in range(3):
        expect[str(write_image(root / f"plain_{i}.jpg", 500 + i, (120, 90)))] = Expect(True, size=(120, 90))
    put("png_named.jpg", encode(picture, "PNG"), Expect(True, size=(120, 90)))
    put("one_pixel.png", encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), Expect(True, size=(1, 1)))
    ramp = np.tile(np.linspace(0, 255, 30000, dtype=np.uint8), (10, 1))
    put(
        "wide_30000x10.png",
        encode(Image.fromarray(ramp).convert("RGB"), "PNG"),
        Expect(True, size=(30000, 10)),
    )
    put(
        "strip_65000x1.png",
        encode(Image.new("RGB", (65000, 1), (9, 9, 9)), "PNG"),
        Expect(True, size=(65000, 1)),
    )
    put("tall_1x40000.png", encode(Image.new("L", (1, 40000), 90), "PNG"), Expect(True, size=(1, 40000)))
    deep = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21).astype(np.uint16)
    put("sixteen_bit.png", encode(Image.fromarray(deep), "PNG"), Expect(True, size=(64, 48)))
    put("cmyk.jpg", encode(picture.convert("CMYK"), "JPEG"), Expect(True, size=(120, 90)))
    palette = picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette_transparent.png", encode(palette, "PNG", transparency=0), ok)
    put("palette_transparent.gif", encode(palette, "GIF", transparency=0), ok)
    frames = [product_image(i, (60, 40)) for i in range(4)]
    put("animated.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0),
        Expect(True, size=(60, 40)))  # fmt: skip
    put("animated.webp", encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=40),
        Expect(True, size=(60, 40)))  # fmt: skip
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: the recorded size is the displayed one
    put("exif_rotated.jpg", encode(picture, "JPEG", exif=exif.tobytes()), Expect(True, size=(90, 120)))
    put("exif_corrupt.jpg", encode(picture, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xffjunk"),
        Expect(True, size=(120, 90)))  # fmt: skip
    put("progressive.jpg", encode(picture, "JPEG", progressive=True), Expect(True, size=(120, 90)))
    put(b"caf\xe9_latin1_name.jpg", encode(product_image(7, (80, 60)), "JPEG"), Expect(True, size=(80, 60)))
    put("produit_été_製品.png", encode(product_image(8, (80, 60)), "PNG"), Expect(True, size=(80, 60)))
    folder_named_like_an_image = root / "folder.jpg"
    folder_named_like_an_image.mkdir()
    expect[str(write_image(folder_named_like_an_image / "inside.png", 9, (50, 50)))] = Expect(
        True, size=(50, 50)
    )
    os.symlink(root / "plain_0.jpg", root / "link_to_plain.jpg")
    expect[str(root / "link_to_plain.jpg")] = Expect(True, size=(120, 90))

    # --- broken, hostile or unreadable: skipped with a reason ---------------------------------
    jpeg = encode(picture, "JPEG", quality=90)
    png = encode(picture, "PNG")
    put("zero.jpg", b"", Expect(False, "empty file"))
    put("truncated.jpg", jpeg[: len(jpeg) // 2], Expect(False, "truncated"))
    put("truncated.png", png[: len(png) // 2], Expect(False, "truncated"))
    put("shopping_list.jpg", b"eggs\nmilk\n" * 20, Expect(False, "not an image (content is text)"))
    put("page.png", b"<!DOCTYPE html><html><body>404</body></html>", Expect(False, "content is an HTML page"))
    put("bomb.png", huge_png_header(60000, 60000), Expect(False, "too large to decode safely"))
    gif_bomb = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    gif_bomb[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen
    put("bomb.gif", bytes(gif_bomb), Expect(False, "too large to decode safely"))
    put("bomb_frame.gif", gif_frame_bomb(), Expect(False, "too large to decode safely"))
    progressive = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG", progressive=True)
    put(
        "bomb_progressive.jpg",
        with_sof_size(progressive, 40000, 40000),
        Expect(False, "too large to decode safely"),
    )
    # Pillow refuses to inflate a text chunk past 1 MB: the file is refused, memory is not spent.
    put("text_bomb.png", zlib_text_bomb_png(), Expect(False, "metadata too large to read safely"))
    put("many_scans.jpg", many_scans_jpeg(1024, 5000), Expect(False, "too many scans"))
    # Its reads never finish (tests/reliability/stalling_cli.py): the per-file time limit ends it.
    put(STALLED_FILE, encode(picture, "JPEG"), Expect(False, "took too long"))
    os.mkfifo(root / "pipe.jpg")
    expect[str(root / "pipe.jpg")] = Expect(False, "not a regular file")
    os.symlink(root / "does_not_exist.png", root / "broken_link.png")
    expect[str(root / "broken_link.png")] = Expect(False, "broken symlink")
    os.symlink(root / "self_loop.jpg", root / "self_loop.jpg")
    expect[str(root / "self_loop.jpg")] = Expect(False, "too many levels of symbolic links")
    loop_dir = root / "loop"
    loop_dir.mkdir()
    os.symlink("..", loop_dir / "back_up")  # a folder loop: walked once
    secret = write_image(root / "secret.jpg", 11, (40, 40))
    secret.chmod(0)
    expect[str(secret)] = Expect(False, "permission denied")
    locked = root / "locked"
    write_image(locked / "inside_locked.jpg", 12, (40, 40))
    locked.chmod(0)
    return expect
