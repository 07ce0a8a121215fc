"""Where a query comes from (a file, pasted or dropped image data, a web address, a catalog image)
and turning it into a decoded query image, off the GUI thread.

Decoding goes through the core (`Library.decode_query_image` / `decode_query_bytes`), so a
file that is not an image gets the same one-line message as on the command line.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QImage

from visualfinder.errors import QueryError
from visualfinder.jobs import CancelToken, ProgressCallback
from visualfinder.library.facade import Library
from visualfinder.search.request import QueryTerm

log = logging.getLogger(__name__)

# The query image is decoded at least this large on its short side, for a sharp preview.
DISPLAY_MIN_SIDE = 768
# ... and the preview keeps at most this many pixels on its long side.
DISPLAY_MAX_SIDE = 1600
# Raw image formats browsers and editors put on the clipboard, best first.
IMAGE_MIME_TYPES = ("image/png", "image/webp", "image/jpeg", "image/gif", "image/bmp", "image/tiff")


@dataclass(frozen=True)
class QuerySource:
    """`kind`: file (path), data (encoded bytes), qimage (QImage), url (http/https), indexed (image id)."""

    kind: str
    value: object
    name: str
    path: str | None = None  # the file behind it, if any (shown, and opened from the query panel)


@dataclass
class DroppedContent:
    """What a drop or paste carries: folders to add and/or an image to search with."""

    folders: list[str]
    query: QuerySource | None

    @property
    def empty(self) -> bool:
        return not self.folders and self.query is None


@dataclass
class QueryImage:
    """A decoded query: the RGB image for the model and a QImage preview with the same aspect."""

    source: QuerySource
    image: Image.Image
    preview: QImage
    width: int  # full size of the original, after EXIF orientation
    height: int

    def terms(self, crop: tuple[float, float, float, float] | None) -> list[QueryTerm]:
        """Query terms for this image; `crop` is (x, y, w, h) in fractions of the image."""
        if self.source.kind == "indexed" and crop is None:
            return [QueryTerm("similar", self.source.value)]  # the stored vector: exact and free
        return [QueryTerm("pil", self.image, crop=crop)]


def file_source(path: str | os.PathLike) -> QuerySource:
    full = os.path.abspath(os.fspath(path))
    return QuerySource("file", full, Path(full).name, path=full)


def indexed_source(image_id: int, path: str) -> QuerySource:
    return QuerySource("indexed", int(image_id), Path(path).name, path=path)


def read_mime(mime: QMimeData, verb: str = "dropped") -> DroppedContent:
    """Sort what a drop or the clipboard holds: local folders, then the best image to query with.

    Preference for the image: a local file, then raw image data (a browser drag or a copied
    image), then a web address to download, then text that names a file or a web address.
    """
    folders: list[str] = []
    files: list[str] = []
    remote: list[str] = []
    for url in mime.urls() if mime.hasUrls() else []:
        _sort_url(url, folders, files, remote)
    if not (files or remote) and mime.hasText():
        for line in mime.text().splitlines():
            text = line.strip().strip('"')
            if text:
                _sort_url(QUrl.fromUserInput(text), folders, files, remote)
    query: QuerySource | None = None
    if files:
        query = file_source(files[0])
    else:
        for fmt in IMAGE_MIME_TYPES:
            if mime.hasFormat(fmt):
                data = bytes(mime.data(fmt).data())
                if data:
                    query = QuerySource("data", data, f"the {verb} image")
                    break
        if query is None and mime.hasImage():
            image = mime.imageData()
            if isinstance(image, QImage) and not image.isNull():
                query = QuerySource("qimage", image, f"the {verb} image")
        if query is None and remote:
            query = QuerySource("url", remote[0], _url_name(remote[0]))
    return DroppedContent(folders, query)


def _sort_url(url: QUrl, folders: list[str], files: list[str], remote: list[str]) -> None:
    if url.isLocalFile():
        path = url.toLocalFile()
        if os.path.isdir(path):
            folders.append(os.path.abspath(path))
        elif path:
            files.append(path)
    elif url.scheme() in ("http", "https"):
        remote.append(url.toString())


def _url_name(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    return name or url


def load_query(
    library: Library, source: QuerySource, cancel: CancelToken, progress: ProgressCallback
) -> QueryImage:
    """Decode a query source (on a worker). Raises QueryError with a user-facing message."""
    if source.kind == "file":
        decoded = library.decode_query_image(str(source.value), min_side=DISPLAY_MIN_SIDE)
    elif source.kind == "indexed":
        decoded = _decode_indexed(library, source)
    elif source.kind == "data":
        decoded = library.decode_query_bytes(bytes(source.value), source.name, min_side=DISPLAY_MIN_SIDE)
    elif source.kind == "url":  # the core's fetcher: size limit, timeout, content-type check
        decoded = library.fetch_query_image(str(source.value), min_side=DISPLAY_MIN_SIDE)
    elif source.kind == "qimage":
        image = _qimage_to_pil(source.value)
        if image.width * image.height > library.settings.max_image_pixels:
            raise QueryError(f"{source.name} is too large to search with ({image.width}x{image.height})")
        return QueryImage(source, image, _preview(image), image.width, image.height)
    else:
        raise QueryError(f"unknown query source {source.kind!r}")
    cancel.raise_if_cancelled()
    return QueryImage(source, decoded.image, _preview(decoded.image), decoded.width, decoded.height)


def _decode_indexed(library: Library, source: QuerySource):
    """A catalog image: its file for the preview, or its thumbnail if the file is gone."""
    try:
        return library.decode_query_image(str(source.path), min_side=DISPLAY_MIN_SIDE)
    except QueryError:
        record = library.catalog.records([int(source.value)]).get(int(source.value))
        if record is None or not record.thumb_path:
            raise
        return library.decode_query_image(record.thumb_path)


def _qimage_to_pil(image: QImage) -> Image.Image:
    """Copy a QImage (pasted screenshot, browser image data) into an RGB PIL image."""
    if image.hasAlphaChannel():
        # Flatten transparency onto white, as the core does for files (product shots on white).
        rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
        raw = Image.frombuffer(
            "RGBA",
            (rgba.width(), rgba.height()),
            bytes(rgba.constBits()),
            "raw",
            "RGBA",
            rgba.bytesPerLine(),
            1,
        )
        background = Image.new("RGBA", raw.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, raw).convert("RGB")
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    return Image.frombuffer(
        "RGB", (rgb.width(), rgb.height()), bytes(rgb.constBits()), "raw", "RGB", rgb.bytesPerLine(), 1
    ).copy()


def _preview(image: Image.Image) -> QImage:
    """A QImage copy of `image` for the query panel (made on the worker: QImage is not GUI-bound)."""
    if max(image.size) > DISPLAY_MAX_SIDE:
        image = image.copy()
        image.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.Resampling.BILINEAR)
    data = image.tobytes("raw", "RGB")
    width, height = image.size
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
