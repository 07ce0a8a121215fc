"""Icons drawn for visualfinder (SVG in gui/resources), tinted to the palette so they follow dark mode.

The toolbar icons are single-colour line drawings using `currentColor`; an icon engine renders
each size on demand in the palette's text colour (faded when disabled) and caches it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QPoint, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QIconEngine, QImage, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).parent / "resources"
ICON_DIR = RESOURCES / "icons"
APP_ICON = RESOURCES / "visualfinder.svg"


def app_icon() -> QIcon:
    return QIcon(str(APP_ICON))


def icon(name: str, palette: QPalette | None = None) -> QIcon:
    """A toolbar/menu icon in the palette's text colour (and a faded one for disabled actions)."""
    palette = palette or QGuiApplication.palette()
    colour = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.WindowText)
    disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText)
    return _icon(name, colour.name(), disabled.name())


def pixmap(name: str, size: int, colour: QColor | str, ratio: float = 1.0) -> QPixmap:
    """One icon rendered at `size` logical pixels in `colour` (alpha included)."""
    colour = QColor(colour)
    result = _render(_svg(name, colour.name()), size, ratio)
    if colour.alpha() < 255:
        faded = QPixmap(result.size())
        faded.setDevicePixelRatio(ratio)
        faded.fill(Qt.GlobalColor.transparent)
        painter = QPainter(faded)
        painter.setOpacity(colour.alphaF())
        painter.drawPixmap(QPoint(0, 0), result)
        painter.end()
        return faded
    return result


@cache
def _icon(name: str, colour: str, disabled: str) -> QIcon:
    return QIcon(_TintedIconEngine(name, colour, disabled))


class _TintedIconEngine(QIconEngine):
    def __init__(self, name: str, colour: str, disabled: str):
        super().__init__()
        self._name, self._colour, self._disabled = name, colour, disabled
        self._cache: dict[tuple[int, int, bool], QPixmap] = {}

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        return self.scaledPixmap(size, mode, state, 1.0)

    def scaledPixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State, scale: float) -> QPixmap:
        side = min(size.width(), size.height())
        faded = mode == QIcon.Mode.Disabled
        key = (side, round(scale * 100), faded)
        if key not in self._cache:
            svg = _svg(self._name, self._disabled if faded else self._colour)
            self._cache[key] = _render(svg, side, scale)
        return self._cache[key]

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        ratio = painter.device().devicePixelRatioF() if painter.device() else 1.0
        painter.drawPixmap(rect, self.scaledPixmap(rect.size(), mode, state, ratio))

    def clone(self) -> QIconEngine:
        return _TintedIconEngine(self._name, self._colour, self._disabled)


@cache
def _svg(name: str, colour: str) -> bytes:
    path = ICON_DIR / f"{name}.svg"
    return path.read_text(encoding="utf-8").replace("currentColor", colour).encode("utf-8")


def _render(svg: bytes, size: int, ratio: float) -> QPixmap:
    pixels = max(1, round(size * ratio))
    image = QImage(pixels, pixels, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(QByteArray(svg)).render(painter, QRectF(0, 0, pixels, pixels))
    painter.end()
    result = QPixmap.fromImage(image)
    result.setDevicePixelRatio(ratio)
    return result


def clear_cache() -> None:
    """Forget tinted icons (the palette changed: light <-> dark)."""
    _icon.cache_clear()
