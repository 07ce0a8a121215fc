"""Friendly full-page states of the results area: empty library, ready to search, no results."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from visualfinder.gui import icons


class EmptyState(QWidget):
    """A big icon, a title, a line of help and an optional button, centred."""

    buttonClicked = Signal()

    def __init__(self, icon: str, title: str, text: str, button: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._icon_name = icon
        self.icon = QLabel(self)
        self.icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title = QLabel(title, self)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = QFont(self.title.font())
        font.setPointSizeF(font.pointSizeF() * 1.45)
        font.setWeight(QFont.Weight.DemiBold)
        self.title.setFont(font)
        self.text = QLabel(text, self)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setWordWrap(True)
        self.text.setFixedWidth(420)  # a wrapped label needs a width to know its height
        self.button = QPushButton(button, self)
        self.button.setVisible(bool(button))
        self.button.clicked.connect(self.buttonClicked)
        # The same background as the results grid it stands in for.
        self.setBackgroundRole(QPalette.ColorRole.Base)
        self.setAutoFillBackground(True)

        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(3)
        layout.addWidget(self.icon)
        layout.addSpacing(8)
        layout.addWidget(self.title)
        text_row = QHBoxLayout()
        text_row.addStretch(1)
        text_row.addWidget(self.text)
        text_row.addStretch(1)
        layout.addLayout(text_row)
        layout.addSpacing(10)
        layout.addLayout(row)
        layout.addStretch(4)
        self.refresh_icons()

    def set_text(self, title: str | None = None, text: str | None = None) -> None:
        if title is not None:
            self.title.setText(title)
        if text is not None:
            self.text.setText(text)

    def refresh_icons(self) -> None:
        colour = QColor(self.palette().color(QPalette.ColorRole.WindowText))
        colour.setAlpha(110)
        self.icon.setPixmap(icons.pixmap(self._icon_name, 72, colour, self.devicePixelRatioF()))
        muted = QColor(self.palette().color(QPalette.ColorRole.WindowText))
        muted.setAlpha(170)
        self.text.setStyleSheet(f"color: rgba({muted.red()},{muted.green()},{muted.blue()},{muted.alpha()});")
