"""Icons drawn for visualfinder (SVG in gui/resources), tinted to the palette so they follow dark mode."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).parent / "resources"
ICON_DIR = RESOURCES / "icons"
APP_ICON = RESOURCES / "visualfinder.svg"
_SIZES = (16, 20, 24, 32, 48, 64)


def app_icon() -> QIcon:
    return QIcon(str(APP_ICON))


def icon(name: str, palette: QPalette | None = None) -> QIcon:
    """A toolbar/menu icon in the palette's text colour (and a faded one for disabled actions)."""
    palette = palette or QGuiApplication.palette()
    colour = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.WindowText)
    disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText)
    return _icon(name, colour.name(), disabled.name())


def pixmap(name: str, size: int, colour: QColor | str, ratio: float = 1.0) -> QPixmap:
    """One icon rendered at `size` logical pixels in `colour`."""
    return _render(_svg(name, QColor(colour).name()), size, ratio)


@cache
def _icon(name: str, colour: str, disabled: str) -> QIcon:
    result = QIcon()
    normal, faded = _svg(name, colour), _svg(name, disabled)
    for size in _SIZES:
        for ratio in (1.0, 2.0):
            result.addPixmap(_render(normal, size, ratio), QIcon.Mode.Normal)
            result.addPixmap(_render(faded, size, ratio), QIcon.Mode.Disabled)
    return result


@cache
def _svg(name: str, colour: str) -> bytes:
    path = ICON_DIR / f"{name}.svg"
    return path.read_text(encoding="utf-8").replace("currentColor", colour).encode("utf-8")


def _render(svg: bytes, size: int, ratio: float) -> QPixmap:
    pixels = round(size * ratio)
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
