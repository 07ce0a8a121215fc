"""The query panel: the query image (or a drop zone), and a rectangle dragged on it to search a region."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from visualfinder.gui import icons

Crop = tuple[float, float, float, float]
MIN_CROP_PX = 8  # a smaller drag is a click, not a region


class CropImageView(QWidget):
    """Shows an image scaled to fit; a mouse drag selects a region (emitted as fractions)."""

    cropChanged = Signal(object)  # Crop or None
    clicked = Signal()  # a click on the empty drop zone

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._pixmap: QPixmap | None = None
        self._crop: Crop | None = None
        self._drag_from: QPointF | None = None
        self._drag_to: QPointF | None = None
        self.placeholder = "Drop an image here\nor paste one (Ctrl+V)"
        self.setMinimumSize(160, 110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setAccessibleName("Query image")

    def sizeHint(self) -> QSize:
        return QSize(280, 230)

    @property
    def crop(self) -> Crop | None:
        return self._crop

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self._pixmap = QPixmap.fromImage(image) if image is not None else None
        self._crop = None
        self._drag_from = self._drag_to = None
        self.setCursor(Qt.CursorShape.CrossCursor if image is not None else Qt.CursorShape.PointingHandCursor)
        self.update()

    def set_crop(self, crop: Crop | None) -> None:
        """Set the region without a drag (tests, restoring); emits cropChanged if it changed."""
        if crop != self._crop:
            self._crop = crop
            self.update()
            self.cropChanged.emit(crop)

    def image_rect(self) -> QRectF:
        """Where the image is drawn, in widget coordinates."""
        if self._image is None:
            return QRectF()
        area = QRectF(self.rect()).adjusted(6, 6, -6, -6)
        size = QSize(self._image.width(), self._image.height()).scaled(
            area.size().toSize(), Qt.AspectRatioMode.KeepAspectRatio
        )
        rect = QRectF(0, 0, size.width(), size.height())
        rect.moveCenter(area.center())
        return rect

    def point_at(self, fx: float, fy: float) -> QPoint:
        """The widget point at fractions (fx, fy) of the image (for tests and accessibility)."""
        r = self.image_rect()
        return QPointF(r.left() + fx * r.width(), r.top() + fy * r.height()).toPoint()

    # --- mouse ---------------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        if self._image is None:
            self.clicked.emit()
            return
        self._drag_from = self._drag_to = self._clamp(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None:
            self._drag_to = self._clamp(event.position())
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is None or event.button() != Qt.MouseButton.LeftButton:
            return super().mouseReleaseEvent(event)
        self._drag_to = self._clamp(event.position())
        band = QRectF(self._drag_from, self._drag_to).normalized()
        self._drag_from = self._drag_to = None
        if band.width() >= MIN_CROP_PX and band.height() >= MIN_CROP_PX:
            r = self.image_rect()
            crop = (
                (band.left() - r.left()) / r.width(), (band.top() - r.top()) / r.height(),
                band.width() / r.width(), band.height() / r.height(),
            )  # fmt: skip
            self.set_crop(tuple(round(v, 4) for v in crop))
        self.update()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self._image is not None and event.button() == Qt.MouseButton.LeftButton:
            self.set_crop(None)  # double-click: back to the whole image

    def _clamp(self, point: QPointF) -> QPointF:
        r = self.image_rect()
        return QPointF(min(max(point.x(), r.left()), r.right()), min(max(point.y(), r.top()), r.bottom()))

    # --- painting ------------------------------------------------------------------------

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        palette = self.palette()
        if self._pixmap is None:
            self._paint_drop_zone(painter, palette)
            return
        target = self.image_rect()
        clip = QPainterPath()
        clip.addRoundedRect(target, 6, 6)
        painter.setClipPath(clip)
        painter.drawPixmap(target, self._pixmap, QRectF(self._pixmap.rect()))
        band = self._band(target)
        if band is not None:
            shade = QPainterPath()
            shade.addRect(target)
            inner = QPainterPath()
            inner.addRect(band)
            painter.fillPath(shade.subtracted(inner), QColor(0, 0, 0, 120))
            pen = QPen(palette.color(QPalette.ColorRole.Highlight), 2)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(band)
            painter.setBrush(QColor("white"))
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Highlight), 1.5))
            for corner in (band.topLeft(), band.topRight(), band.bottomLeft(), band.bottomRight()):
                painter.drawEllipse(corner, 3.5, 3.5)

    def _band(self, target: QRectF) -> QRectF | None:
        if self._drag_from is not None and self._drag_to is not None:
            return QRectF(self._drag_from, self._drag_to).normalized()
        if self._crop is not None:
            x, y, w, h = self._crop
            return QRectF(target.left() + x * target.width(), target.top() + y * target.height(),
                          w * target.width(), h * target.height())  # fmt: skip
        return None

    def _paint_drop_zone(self, painter: QPainter, palette: QPalette) -> None:
        area = QRectF(self.rect()).adjusted(6, 6, -6, -6)
        colour = QColor(palette.color(QPalette.ColorRole.WindowText))
        colour.setAlpha(90)
        pen = QPen(colour, 1.5, Qt.PenStyle.DashLine)
        pen.setDashPattern([4, 4])
        painter.setPen(pen)
        fill = QColor(palette.color(QPalette.ColorRole.Base))
        painter.setBrush(fill)
        painter.drawRoundedRect(area, 10, 10)
        glyph = icons.pixmap("drop-image", 40, colour, self.devicePixelRatioF())
        top = area.center().y() - 40
        painter.drawPixmap(QPointF(area.center().x() - 20, top), glyph)
        text_colour = QColor(palette.color(QPalette.ColorRole.WindowText))
        text_colour.setAlpha(170)
        painter.setPen(text_colour)
        text_rect = QRect(int(area.left()), int(top + 48), int(area.width()), 44)
        painter.drawText(
            text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, self.placeholder
        )


class QueryPanel(QWidget):
    """The query image with its caption and the crop/clear buttons."""

    cropChanged = Signal(object)
    clearRequested = Signal()
    browseRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = CropImageView(self)
        self.caption = QLabel(self)
        self.caption.setTextFormat(Qt.TextFormat.PlainText)
        self.caption.setWordWrap(True)
        self.caption.setObjectName("queryCaption")
        self.hint = QLabel("Drag a rectangle on the image to search just that region.", self)
        self.hint.setWordWrap(True)
        self.hint.setEnabled(False)  # greyed: a hint, not content
        self.clear_crop_button = QToolButton(self)
        self.clear_crop_button.setText("Whole image")
        self.clear_crop_button.setToolTip("Search with the whole image again (double-click the image)")
        self.clear_crop_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.clear_crop_button.setAutoRaise(True)
        self.clear_button = QToolButton(self)
        self.clear_button.setToolTip("Clear the query")
        self.clear_button.setAutoRaise(True)

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.caption, 1)
        buttons.addWidget(self.clear_crop_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.hint)

        self.view.cropChanged.connect(self._on_crop)
        self.view.clicked.connect(self.browseRequested)
        self.clear_crop_button.clicked.connect(lambda: self.view.set_crop(None))
        self.clear_button.clicked.connect(self.clearRequested)
        self._title = ""
        self.refresh_icons()
        self.show_query(None)

    def refresh_icons(self) -> None:
        self.clear_crop_button.setIcon(icons.icon("crop", self.palette()))
        self.clear_button.setIcon(icons.icon("clear", self.palette()))

    def show_query(self, image: QImage | None, title: str = "", detail: str = "") -> None:
        self.view.set_image(image)
        self._title = title
        self._detail = detail
        self._update_caption()
        has = image is not None
        self.clear_button.setVisible(has or bool(title))
        self.hint.setVisible(has)

    def show_text_query(self, text: str) -> None:
        """A text-only query: no image, the words as caption."""
        self.show_query(None, f"“{text}”", "text search")

    def _on_crop(self, crop) -> None:
        self._update_caption()
        self.cropChanged.emit(crop)

    def _update_caption(self) -> None:
        crop = self.view.crop
        lines = [self._title] if self._title else []
        detail = self._detail
        if crop is not None:
            detail = f"region {crop[2] * 100:.0f}% × {crop[3] * 100:.0f}%"
        if detail:
            lines.append(detail)
        self.caption.setText("\n".join(lines))
        self.caption.setVisible(bool(lines))
        self.clear_crop_button.setVisible(crop is not None)
