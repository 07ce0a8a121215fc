"""Thumbnails for the results grid, loaded lazily on a thread pool into a bounded cache.

The grid asks only for the items it paints. A request that misses the cache is pushed on a
stack, and pool workers take the newest first, so after a fast scroll the items now on screen
load before the ones scrolled past (old requests beyond a small limit are dropped; they are
asked for again if they come back into view). Files are read with QImageReader scaled at
decode time (cheap for the pipeline's 256 px JPEGs); the GUI thread only wraps the decoded
QImage in a QPixmap.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

from PySide6.QtCore import QObject, QRectF, QRunnable, QSize, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPainterPath, QPen, QPixmap

log = logging.getLogger(__name__)

MAX_PENDING = 256


class _LoadTask(QRunnable):
    def __init__(self, loader: ThumbnailLoader):
        super().__init__()
        self._loader = loader

    def run(self) -> None:
        loader = self._loader
        while (request := loader._next_request()) is not None:
            key, sources, size = request
            image = read_scaled(sources, size)
            loader._loaded.emit(key, size, image)
        loader._worker_done()


def read_scaled(sources: Sequence[str], size: int) -> QImage:
    """The first readable file of `sources`, scaled to fit `size` x `size` (null image if none)."""
    for source in sources:
        if not source:
            continue
        reader = QImageReader(source)
        reader.setAutoTransform(True)
        original = reader.size()
        if original.isValid() and (original.width() > size or original.height() > size):
            reader.setScaledSize(original.scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if not image.isNull():
            # Larger: formats that ignore setScaledSize. Smaller: a thumbnail made from a small
            # decode, or a grid zoomed past the thumbnail size; filling the cell reads better.
            if max(image.width(), image.height()) != size:
                image = image.scaled(
                    size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                )
            return rounded(image, radius=max(2.0, size / 40))
    return QImage()


def rounded(image: QImage, radius: float) -> QImage:
    """Round the corners and draw a faint frame once, here on the pool, so that painting the grid
    is a plain copy (a clip path per cell costs more than the rest of the cell)."""
    out = QImage(image.size(), QImage.Format.Format_ARGB32_Premultiplied)
    out.fill(Qt.GlobalColor.transparent)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    rect = QRectF(0, 0, image.width(), image.height())
    path = QPainterPath()
    path.addRoundedRect(rect, radius, radius)
    painter.setClipPath(path)
    painter.drawImage(0, 0, image)
    painter.setClipping(False)
    painter.setPen(QPen(QColor(128, 128, 128, 70), 1))
    painter.drawRoundedRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), radius, radius)
    painter.end()
    return out


class ThumbnailLoader(QObject):
    """`pixmap(key, sources)` returns a cached thumbnail, or None and loads it in the background."""

    ready = Signal(str)  # key: its thumbnail is now in the cache (or known to be missing)
    _loaded = Signal(str, int, QImage)

    def __init__(self, size: int = 160, device_pixel_ratio: float = 1.0, max_bytes: int = 128 << 20,
                 threads: int = 2, parent: QObject | None = None):  # fmt: skip
        super().__init__(parent)
        self._size = size
        self._ratio = device_pixel_ratio
        self._max_bytes = max_bytes
        self._cache: OrderedDict[str, QPixmap | None] = OrderedDict()  # None: unreadable
        self._bytes = 0
        self._lock = threading.Lock()
        self._stack: list[tuple[str, tuple[str, ...], int]] = []
        self._pending: set[str] = set()
        self._workers = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._loaded.connect(self._on_loaded, Qt.ConnectionType.QueuedConnection)

    @property
    def size(self) -> int:
        return self._size

    def set_size(self, size: int, device_pixel_ratio: float | None = None) -> None:
        """Thumbnails at a new size: the cache is dropped and refilled on demand."""
        ratio = device_pixel_ratio or self._ratio
        if size == self._size and ratio == self._ratio:
            return
        self._size, self._ratio = size, ratio
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._stack.clear()
            self._pending.clear()
        self._cache.clear()
        self._bytes = 0

    def pixmap(self, key: str, sources: Sequence[str]) -> QPixmap | None:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        self.request(key, sources)
        return None

    def is_cached(self, key: str) -> bool:
        return key in self._cache

    def request(self, key: str, sources: Sequence[str]) -> None:
        pixels = round(self._size * self._ratio)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
            self._stack.append((key, tuple(sources), pixels))
            if len(self._stack) > MAX_PENDING:
                dropped = self._stack[: len(self._stack) - MAX_PENDING]
                del self._stack[: len(dropped)]
                self._pending.difference_update(k for k, _, _ in dropped)
            start = self._workers < self._pool.maxThreadCount()
            if start:
                self._workers += 1
        if start:
            self._pool.start(_LoadTask(self))

    def shutdown(self) -> None:
        """Drop pending work and wait for the few loads in flight (each a few milliseconds)."""
        with self._lock:
            self._stack.clear()
        self._pool.waitForDone(2000)

    # --- pool side -----------------------------------------------------------------------

    def _next_request(self) -> tuple[str, tuple[str, ...], int] | None:
        with self._lock:
            return self._stack.pop() if self._stack else None

    def _worker_done(self) -> None:
        with self._lock:
            self._workers -= 1
            restart = bool(self._stack) and self._workers == 0
            if restart:
                self._workers += 1
        if restart:  # a request slipped in between the last pop and here
            self._pool.start(_LoadTask(self))

    @Slot(str, int, QImage)
    def _on_loaded(self, key: str, pixels: int, image: QImage) -> None:
        with self._lock:
            self._pending.discard(key)
        if pixels != round(self._size * self._ratio):
            return  # loaded for a size no longer shown
        if image.isNull():
            self._cache[key] = None
        else:
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(self._ratio)
            self._cache[key] = pixmap
            self._bytes += _cost(pixmap)
            while self._bytes > self._max_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= _cost(old)
        self.ready.emit(key)


def _cost(pixmap: QPixmap | None) -> int:
    return 0 if pixmap is None else pixmap.width() * pixmap.height() * 4
