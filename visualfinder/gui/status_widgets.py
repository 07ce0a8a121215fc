"""Status bar pieces (library size, model, watcher, a progress bar with Stop) and the inline
message bar that shows errors without a modal dialog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget

from visualfinder.gui import icons
from visualfinder.jobs import Progress

PHASES = {
    "scanning": "Scanning",
    "indexing": "Indexing",
    "removing": "Removing missing files",
    "saving index": "Saving the index",
    "rebuilding index": "Rebuilding the index",
    "downloading model": "Downloading the model",
    "downloading": "Downloading",
}


@dataclass
class Task:
    key: object
    title: str
    progress: Progress | None = None
    cancel: Callable[[], None] | None = None


class ProgressPanel(QWidget):
    """One progress bar for whatever long work runs (indexing, the watcher, a download), with Stop.

    Several tasks may run at once; the newest is shown, with a note of how many others."""

    cancelRequested = Signal(object)  # task key

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.label = QLabel(self)
        self.bar = QProgressBar(self)
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(14)
        self.stop = QToolButton(self)
        self.stop.setAutoRaise(True)
        self.stop.setToolTip("Stop (everything done so far is kept)")
        self.stop.setAccessibleName("Stop")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.stop)
        self._tasks: dict[object, Task] = {}
        self.stop.clicked.connect(self._on_stop)
        self.refresh_icons()
        self.setVisible(False)

    def refresh_icons(self) -> None:
        self.stop.setIcon(icons.icon("stop", self.palette()))

    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def start(self, key: object, title: str, cancel: Callable[[], None] | None = None) -> None:
        self._tasks[key] = Task(key, title, None, cancel)
        self._render()

    def update_progress(
        self,
        key: object,
        progress: Progress,
        title: str | None = None,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = Task(
                key, title or PHASES.get(progress.phase, progress.phase), None, cancel
            )
        task.progress = progress
        self._render()

    def finish(self, key: object) -> None:
        if self._tasks.pop(key, None) is not None:
            self._render()

    def _current(self) -> Task | None:
        return next(reversed(self._tasks.values()), None)

    def _on_stop(self) -> None:
        task = self._current()
        if task is not None and task.cancel is not None:
            task.cancel()
            self.label.setText(f"{task.title}: stopping…")
            self.stop.setEnabled(False)
            self.cancelRequested.emit(task.key)

    def _render(self) -> None:
        task = self._current()
        self.setVisible(task is not None)
        if task is None:
            return
        text = task.title
        p = task.progress
        if p is not None:
            phase = PHASES.get(p.phase, p.phase.capitalize())
            if phase.lower() not in text.lower():
                text = f"{text}: {phase.lower()}"
            if p.phase.startswith("downloading") and p.total:
                text += f" {p.done / 1e6:,.0f} of {p.total / 1e6:,.0f} MB"
            elif p.total:
                text += f" {p.done:,} of {p.total:,}"
            elif p.done:
                text += f" {p.done:,}"
        if len(self._tasks) > 1:
            text += f"  (+{len(self._tasks) - 1} more)"
        self.label.setText(text)
        if p is not None and p.total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(round(1000 * min(1.0, p.done / p.total)))
        else:
            self.bar.setRange(0, 0)  # busy indicator
        self.stop.setVisible(task.cancel is not None)
        self.stop.setEnabled(True)


class MessageBar(QFrame):
    """A closable one-line message above the results: errors and notices, never a modal box."""

    linkActivated = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.icon = QLabel(self)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.text.setOpenExternalLinks(False)
        self.close_button = QToolButton(self)
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.kind = ""
        self.close_button.clicked.connect(self.dismiss)
        self.text.linkActivated.connect(self.linkActivated)
        self.setVisible(False)

    def show_message(self, text: str, kind: str = "error", rich: bool = False) -> None:
        """`kind`: error, warning or info; `rich` text may carry links (linkActivated)."""
        self.kind = kind
        self.text.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.text.setText(text)
        name = {"error": "warning", "warning": "warning", "info": "info"}[kind]
        base = {"error": "#d64545", "warning": "#d99a1e", "info": "#3d7fd9"}[kind]
        colour = QColor(base)
        self.icon.setPixmap(icons.pixmap(name, 18, colour, self.devicePixelRatioF()))
        self.close_button.setIcon(icons.icon("clear", self.palette()))
        window = self.palette().color(QPalette.ColorRole.Window)
        tint = QColor(base)
        tint.setAlpha(40 if window.lightness() > 128 else 70)
        self.setStyleSheet(
            f"#messageBar {{ background: rgba({tint.red()},{tint.green()},{tint.blue()},{tint.alpha()});"
            f" border: 1px solid {colour.name()}; border-radius: 6px; }}"
        )
        self.setVisible(True)

    @property
    def message(self) -> str:
        return "" if self.isHidden() else self.text.text()

    def dismiss(self) -> None:
        self.setVisible(False)
        self.kind = ""
