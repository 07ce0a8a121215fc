"""The results grid: a QListView in icon mode with a delegate that paints thumbnail, label and score."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from visualfinder.gui.results_model import KeptRole, ScoreRole, SecondLineRole

PADDING = 8
TEXT_GAP = 6
DIMMED_OPACITY = 0.35
ICON_SIZES = (96, 128, 160, 200, 256)


class ResultDelegate(QStyledItemDelegate):
    """Paints one result: the thumbnail in a square, the label, and the score with a bar."""

    def __init__(self, icon_size: int = 160, parent=None):
        super().__init__(parent)
        self.icon_size = icon_size

    def cell_size(self, option_font) -> QSize:
        line = QFontMetrics(option_font).height()
        return QSize(self.icon_size + 2 * PADDING, self.icon_size + 2 * PADDING + TEXT_GAP + 2 * line + 6)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return self.cell_size(option.font)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        palette = option.palette
        state = option.state
        selected = bool(state & QStyle.StateFlag.State_Selected)
        hovered = bool(state & QStyle.StateFlag.State_MouseOver)
        rect = option.rect.adjusted(3, 3, -3, -3)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)

        if selected or hovered:
            colour = QColor(palette.color(QPalette.ColorRole.Highlight))
            colour.setAlpha(70 if selected else 28)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(QRectF(rect), 8, 8)
            if selected:
                border = QColor(palette.color(QPalette.ColorRole.Highlight))
                painter.setPen(border)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(QRectF(rect).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)

        if not index.data(KeptRole):
            painter.setOpacity(DIMMED_OPACITY)

        size = self.icon_size
        image_rect = QRect(rect.x() + PADDING - 3, rect.y() + PADDING - 3, size, size)
        image_rect.moveLeft(rect.x() + (rect.width() - size) // 2)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            # Rounded and framed by the loader: a plain copy here, no clip, no scaling.
            logical = pixmap.deviceIndependentSize().toSize()
            target = QRect(0, 0, logical.width(), logical.height())
            target.moveCenter(image_rect.center())
            target.moveBottom(image_rect.bottom())  # wide images sit on their label, like a file manager
            painter.drawPixmap(target, pixmap)
        else:
            placeholder = QColor(palette.color(QPalette.ColorRole.WindowText))
            placeholder.setAlpha(18)
            painter.fillRect(image_rect.adjusted(10, 10, -10, -10), placeholder)

        metrics = QFontMetrics(option.font)
        line = metrics.height()
        text_rect = QRect(
            rect.x() + PADDING, image_rect.bottom() + TEXT_GAP, rect.width() - 2 * PADDING, line
        )
        text_colour = palette.color(QPalette.ColorRole.Text)
        painter.setFont(option.font)
        painter.setPen(text_colour)
        label = metrics.elidedText(index.data(Qt.ItemDataRole.DisplayRole) or "", Qt.TextElideMode.ElideMiddle,
                                   text_rect.width())  # fmt: skip
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, label)

        # The score: always visible, as a number and as a short bar.
        score = float(index.data(ScoreRole) or 0.0)
        second = index.data(SecondLineRole) or f"{score:.3f}"
        score_rect = text_rect.translated(0, line)
        bar_width = min(44, score_rect.width() // 4)
        text_width = metrics.horizontalAdvance(second)
        total = bar_width + 6 + text_width
        left = score_rect.x() + max(0, (score_rect.width() - total) // 2)
        bar = QRect(left, score_rect.center().y() - 1, bar_width, 4)
        track = QColor(text_colour)
        track.setAlpha(40)
        painter.fillRect(bar, track)
        filled = round(bar.width() * min(1.0, max(0.0, score)))
        painter.fillRect(
            QRect(bar.x(), bar.y(), max(2, filled), bar.height()), palette.color(QPalette.ColorRole.Highlight)
        )
        muted = QColor(text_colour)
        muted.setAlpha(170)
        painter.setPen(muted)
        painter.drawText(QRect(bar.right() + 7, score_rect.y(), text_width + 2, line),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, second)  # fmt: skip
        painter.restore()


class ResultsView(QListView):
    """Icon-mode list of results; uniform cells keep layout and scrolling cheap for 10k items."""

    iconSizeChanged = Signal(int)

    def __init__(self, icon_size: int = 160, parent=None):
        super().__init__(parent)
        self.delegate = ResultDelegate(icon_size, self)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(400)
        self.setWrapping(True)
        self.setSpacing(2)
        self.setMouseTracking(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setFrameShape(QListView.Shape.NoFrame)
        self._apply_grid()

    @property
    def icon_size(self) -> int:
        return self.delegate.icon_size

    def set_icon_size(self, size: int) -> None:
        if size != self.delegate.icon_size:
            self.delegate.icon_size = size
            self._apply_grid()
            self.iconSizeChanged.emit(size)

    def _apply_grid(self) -> None:
        """Cells as wide as the columns that fit, so the grid fills the width without a ragged edge."""
        cell = self.delegate.cell_size(self.font())
        available = self.viewport().width() - 2 * self.spacing() - 1
        columns = max(1, available // (cell.width() + self.spacing()))
        width = max(cell.width(), available // columns - self.spacing())
        grid = QSize(width, cell.height())
        if grid != self.gridSize():
            self.setGridSize(grid)
            self.verticalScrollBar().setSingleStep(max(20, cell.height() // 4))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._apply_grid()
