"""Safe image decoding: content-sniffed formats, EXIF orientation, fast JPEG draft decode,
every mode to RGB, a decompression-bomb guard, and thumbnails from the same decode pass."""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError

from visualfinder.errors import ImageDecodeError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 250_000_000
# Our own pixel limit (Settings.max_image_pixels) is checked against the size we will actually
# decode, which for a JPEG is after draft() reduction. Pillow's check still guards what plugins
# allocate while *opening* a file (a 454-byte GIF whose frame claimed 58075x99657 pixels was
# filled with 5.8 GB at open): it raises above twice MAX_IMAGE_PIXELS, which is kept at half our
# limit (see _open_image); JPEGs are opened past it, since they decode at their draft size.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS // 2
ImageFile.LOAD_TRUNCATED_IMAGES = False

try:  # HEIC/HEIF when the optional pillow-heif is installed (`pip install visualfinder[heif]`)
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the optional extra
    HEIF_SUPPORTED = False

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
     ".heic", ".heif", ".avif"}
)  # fmt: skip
# Names written by browsers, editors and copy tools while a file is incomplete.
_TEMP_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".swp", "~")
MAX_FILE_BYTES = 2 * 1024**3
# Non-blocking: opening a FIFO without a writer would otherwise wait forever. O_BINARY: Windows.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
# A JPEG with several scans (progressive) keeps the DCT coefficients of the whole full-size image
# in memory while it decodes, and makes one pass over them per scan, however small the draft
# size: a few hundred crafted bytes can claim 40000x40000 pixels (gigabytes of coefficients) or
# repeat near-empty scans thousands of times (minutes of CPU). TurboJPEG limits scans to 500 too.
MAX_JPEG_SCANS = 500
# ... and the scan work (scans x pixels) to that of this many scans over the largest allowed image.
JPEG_SCAN_BUDGET = 64
THUMB_QUALITY = 85


def is_ignored_name(name: str) -> bool:
    """Hidden, temporary and partial-download names are never catalogued."""
    lower = name.lower()
    return name.startswith(".") or lower.endswith(_TEMP_SUFFIXES) or name.startswith("~$")


def has_image_extension(name: str) -> bool:
    """The name ends in an image extension (a rescan asks this of every file: keep it cheap)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def is_candidate_name(name: str) -> bool:
    """A file name that may hold an image; its content decides the actual format."""
    return not is_ignored_name(name) and has_image_extension(name)


def content_hash(data: bytes) -> str:
    """Identity of a file's bytes: lets a moved or copied file keep its embedding."""
    return xxhash.xxh3_128_hexdigest(data)


@dataclass
class DecodedImage:
    """An RGB image ready for the model and the thumbnailer.

    `image` may be smaller than the file (JPEG draft decode); `width`/`height` are the
    file's full size after EXIF orientation.
    """

    image: Image.Image
    width: int
    height: int
    format: str


def read_image_file(path: str | os.PathLike) -> bytes:
    """Read a file's bytes, turning OS errors into one-line reasons.

    The file is opened non-blocking and checked through its descriptor: a pipe or device that
    took the place of a scanned file is refused instead of blocking this reader forever.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError as exc:
        reason = (
            "broken symlink (target missing)"
            if os.path.islink(path)
            else "file disappeared before it was read"
        )
        # Gone between the scan and the read: the next scan removes it, or reads it once it is back.
        raise ImageDecodeError(
            reason, str(path), transient=reason != "broken symlink (target missing)"
        ) from exc
    except PermissionError as exc:
        raise ImageDecodeError("permission denied", str(path), transient=True) from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError("is a folder, not an image file", str(path)) from exc
    except OSError as exc:  # EIO, ESTALE, EMFILE...: the file may read fine later
        raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}", str(path), transient=True) from exc
    with os.fdopen(fd, "rb") as fh:
        try:
            st = os.fstat(fh.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise ImageDecodeError("is a folder, not an image file", str(path))
            if not stat.S_ISREG(st.st_mode):
                raise ImageDecodeError("not a regular file (device, pipe or socket)", str(path))
            if st.st_size > MAX_FILE_BYTES:
                raise ImageDecodeError(f"file too large ({st.st_size / 1024**3:.1f} GiB)", str(path))
            return fh.read()
        except IsADirectoryError as exc:
            raise ImageDecodeError("is a folder, not an image file", str(path)) from exc
        except OSError as exc:
            raise ImageDecodeError(
                f"cannot read file: {exc.strerror or exc}", str(path), transient=True
            ) from exc


def library_decode_side(model_image_size: int, thumbnail_size: int) -> int:
    """The short side every image of a library is decoded at, by the indexer and for queries alike.

    One decode feeds the model and the thumbnail, so it must serve both; and a JPEG's DCT draft
    depends on it, so the same file only gives the same vector when every caller uses this size.
    """
    return max(model_image_size, thumbnail_size)


def decode_image(
    data: bytes, *, min_side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS, path: str | None = None
) -> DecodedImage:
    """Decode image bytes to RGB, at least `min_side` pixels on the short side where the file is.

    Raises ImageDecodeError with a short reason for anything that is not a usable image.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = _open_image(data, max_pixels)
            fmt = img.format or "unknown"
            full_w, full_h = img.size
            if isinstance(img, JpegImagePlugin.JpegImageFile):  # JPEG and MPO (camera JPEGs)
                _check_jpeg_cost(data, full_w, full_h, max_pixels, path)
                # DCT-domain downscale: decodes a 12 MP photo ~7x faster than a full decode.
                img.draft("RGB", (min_side, min_side))
            if img.size[0] * img.size[1] > max_pixels:
                raise ImageDecodeError(
                    f"image too large to decode safely ({full_w}x{full_h} pixels, limit "
                    f"{max_pixels / 1e6:.0f} MP)",
                    path,
                )
            if getattr(img, "is_animated", False):
                img.seek(0)
            img.load()
            orientation = _exif_orientation(img)
            img = _to_rgb(img)
            if orientation in (2, 3, 4, 5, 6, 7, 8):
                img = _apply_orientation(img, orientation)
            if orientation in (5, 6, 7, 8):
                full_w, full_h = full_h, full_w
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"not an image ({_describe_content(data)})", path) from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            f"image too large to decode safely (over {max_pixels / 1e6:.0f} MP)", path
        ) from exc
    except MemoryError as exc:  # the machine's state, not the file's: tried again later
        raise ImageDecodeError("not enough memory to decode this image", path, transient=True) from exc
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, TypeError,
            KeyError, ZeroDivisionError, zlib.error, RuntimeError) as exc:  # fmt: skip
        raise ImageDecodeError(_describe_decode_error(exc), path) from exc
    if img.size[0] < 1 or img.size[1] < 1:
        raise ImageDecodeError("image has no pixels", path)
    return DecodedImage(img, full_w, full_h, fmt)


def decode_file(
    path: str | os.PathLike, *, min_side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    return decode_image(read_image_file(path), min_side=min_side, max_pixels=max_pixels, path=str(path))


def crop_region(decoded: DecodedImage, box: tuple[float, float, float, float]) -> DecodedImage:
    """Crop (x, y, w, h) given in full-size pixels, or as fractions when all are <= 1."""
    x, y, w, h = box
    img = decoded.image
    if all(0 <= v <= 1 for v in box):
        sx, sy = img.size[0], img.size[1]
    else:
        sx, sy = img.size[0] / decoded.width, img.size[1] / decoded.height
    left, top = round(x * sx), round(y * sy)
    right, bottom = round((x + w) * sx), round((y + h) * sy)
    left, top = max(0, left), max(0, top)
    right, bottom = min(img.size[0], right), min(img.size[1], bottom)
    if right - left < 1 or bottom - top < 1:
        raise ImageDecodeError("the crop region is empty or outside the image")
    cropped = img.crop((left, top, right, bottom))
    scale_w, scale_h = decoded.width / img.size[0], decoded.height / img.size[1]
    return DecodedImage(
        cropped, round(cropped.size[0] * scale_w), round(cropped.size[1] * scale_h), decoded.format
    )


def make_thumbnail(image: Image.Image, size: int) -> Image.Image:
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return thumb


def thumbnail_path(thumbs_dir: Path, digest: str) -> Path:
    """Thumbnails are keyed by content, so moved and copied files share one."""
    return thumbs_dir / digest[:2] / f"{digest}.jpg"


def write_thumbnail(image: Image.Image, size: int, dest: Path) -> Path:
    """Write a JPEG thumbnail atomically (a crash never leaves a half-written file).

    Raises OSError when the data folder cannot be written; a partial temp file is removed.
    """
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # Encoded in memory, written by Python: Pillow's direct-to-file encoder ignores short writes,
    # so on a filling disk it "saved" truncated thumbnails that committed rows then pointed to.
    buf = io.BytesIO()
    make_thumbnail(image, size).save(buf, "JPEG", quality=THUMB_QUALITY, optimize=False)
    try:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
        os.replace(tmp, dest)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself may be gone or read-only: nothing more to clean
            pass
        raise
    return dest


def crop_to_aspect(image: Image.Image, max_ratio: float) -> Image.Image:
    """The centre of `image`, cut so its long side is at most `max_ratio` times its short side."""
    w, h = image.size
    if w > h * max_ratio:
        keep = max(1, round(h * max_ratio))
        left = (w - keep) // 2
        return image.crop((left, 0, left + keep, h))
    if h > w * max_ratio:
        keep = max(1, round(w * max_ratio))
        top = (h - keep) // 2
        return image.crop((0, top, w, top + keep))
    return image


# --- helpers -------------------------------------------------------------------------------


def _open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Image.open with Pillow's own bomb check at our limit; JPEGs past it (see MAX_IMAGE_PIXELS)."""
    ceiling = max_pixels // 2 + 1
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < ceiling:  # a library allowing larger images: only ever raised
        Image.MAX_IMAGE_PIXELS = ceiling
    if data[:3] == b"\xff\xd8\xff":
        return JpegImagePlugin.jpeg_factory(io.BytesIO(data))
    return Image.open(io.BytesIO(data))


def jpeg_scan_count(data: bytes) -> int:
    """Scans (SOS markers) of a JPEG's main image; header segments are skipped by their length.

    After the first scan, FF DA can only be a marker (entropy-coded 0xFF bytes are stuffed), so
    the rest is counted in C. Segments between scans, or a damaged header (libjpeg skips junk
    between segments; we count every FF DA of the file then), may inflate the count: it errs high.
    """
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return data.count(b"\xff\xda")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return 1 + data.count(b"\xff\xda", pos + 2)
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return data.count(b"\xff\xda")


def _check_jpeg_cost(data: bytes, width: int, height: int, max_pixels: int, path: str | None) -> None:
    """Refuse a multi-scan JPEG whose decode would need too much memory or time (see MAX_JPEG_SCANS)."""
    scans = jpeg_scan_count(data)
    if scans <= 1:
        return  # baseline: decoded row by row, at the draft size; the pixel limit covers it
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image too large to decode safely ({width}x{height} pixels in a progressive JPEG, "
            f"limit {max_pixels / 1e6:.0f} MP)",
            path,
        )
    if scans > MAX_JPEG_SCANS or scans * width * height > JPEG_SCAN_BUDGET * max_pixels:
        raise ImageDecodeError(
            f"too many scans ({scans}) in a progressive JPEG: damaged or hostile file", path
        )


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # corrupted EXIF must not cost the image: ignore the orientation
        log.debug("unreadable EXIF orientation", exc_info=True)
        return 1


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[orientation]
    return img.transpose(method)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is flattened onto white (product shots)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = arr - lo
            scale = 255.0 / (hi - lo) if hi > lo else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _describe_content(data: bytes) -> str:
    head = data[:512]
    if head.startswith(b"%PDF"):
        return "content is a PDF document"
    if head.lstrip().startswith((b"<html", b"<!DOCTYPE", b"<!doctype")):
        return "content is an HTML page"
    try:
        head.decode("utf-8")
        return "content is text"
    except UnicodeDecodeError:
        return "unrecognised content"


def _describe_decode_error(exc: BaseException) -> str:
    text = str(exc)
    if "truncated" in text.lower():
        return "truncated or incomplete image data"
    if "decompressed data too large" in text.lower():
        return "metadata too large to read safely (a compressed text chunk inflating past its limit)"
    return f"corrupt image data ({type(exc).__name__}: {text or 'no details'})"
