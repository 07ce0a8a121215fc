"""Helpers for the GUI tests: scripted dialogs, a recording desktop, real drops, waiting for results."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import shiboken6
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from visualfinder.gui.dialogs import Desktop, Dialogs
from visualfinder.gui.main_window import MainWindow

WAIT_MS = 30_000  # generous: the first test in a run also loads torch and the model


class ScriptedDialogs(Dialogs):
    """Answers from a script instead of modal dialogs; records what was asked."""

    def __init__(self) -> None:
        self.image: str | None = None
        self.folder: str | None = None
        self.csv: tuple[str, bool] | None = None
        self.weights: str | None = None
        self.answers: dict[str, str | None] = {}
        self.files: dict[str, str | None] = {}  # open_file's answer by caption
        self.asked: list[tuple[str, str]] = []

    def open_image(self, parent, directory):
        return self.image

    def choose_folder(self, parent, directory, caption=""):
        return self.folder

    def choose_weights_file(self, parent, directory):
        return self.weights

    def open_file(self, parent, caption, directory, file_filter):
        self.asked.append((caption, directory))
        return self.files.get(caption)

    def save_csv(self, parent, suggested, caption=""):
        return self.csv

    def ask(self, parent, title, text, buttons, on_answer, *, informative="", default=None):
        self.asked.append((title, text))
        on_answer(self.answers.get(title, buttons[-1]))

    def show_error(self, parent, title, text):
        self.asked.append((title, text))


class RecordingDesktop(Desktop):
    """Records what would be opened; `move_to_trash` moves into `trash_dir`, a test's own trash."""

    def __init__(self, trash_dir: Path | None = None) -> None:
        self.opened: list[str] = []
        self.shown: list[str] = []
        self.trash_dir = trash_dir
        self.trashed: list[str] = []

    def move_to_trash(self, path):
        if self.trash_dir is None:
            return False  # no trash: the file stays where it is
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(path, self.trash_dir / f"{len(self.trashed)}-{Path(path).name}")
        self.trashed.append(path)
        return True

    def open_file(self, path):
        self.opened.append(path)
        return True

    def show_in_folder(self, path):
        self.shown.append(path)
        return True


def close_window(qtbot, window: MainWindow) -> None:
    if not shiboken6.isValid(window):
        return
    if window.session.state != "shut":
        window.close()
        qtbot.waitUntil(lambda: window.session.state == "shut", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT_MS)
    window.deleteLater()


def drop(widget, mime: QMimeData) -> bool:
    """A real drag-enter then drop of `mime` on `widget`; True if the drop was accepted."""
    pos = QPointF(widget.rect().center())
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(
        pos.toPoint(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(pos, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


def search_and_wait(qtbot, window: MainWindow, action: Callable[[], object]):
    """Run `action` (a drop, a paste...) and wait for the grid to show the results."""
    with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS) as blocker:
        action()
    return blocker.args[0]


def shown_paths(window: MainWindow) -> list[str]:
    model = window.results_model
    return [model.result(i).record.path for i in range(model.rowCount())]
