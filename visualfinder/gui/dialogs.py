"""What the window asks the user and the desktop: file choosers, questions, opening files.

The window gets these as objects, so tests can answer a file chooser or a question without a
modal dialog, and can see what would have been opened without launching another program.
Questions are asked with non-blocking `open()` and answered through a callback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QFile, QProcess, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget
from send2trash import send2trash

log = logging.getLogger(__name__)

IMAGE_FILTER = (
    "Images (*.jpg *.jpeg *.png *.webp *.gif *.bmp *.tif *.tiff *.heic *.heif *.avif);;All files (*)"
)
CSV_FILTER = "CSV (*.csv)"
EXCEL_CSV_FILTER = "CSV for Excel (*.csv)"
SHEET_FILTER = "Product data (*.csv *.tsv *.txt *.json *.jsonl *.ndjson);;All files (*)"
PEM_FILTER = "Certificates (*.pem *.crt *.cer);;All files (*)"


class Dialogs:
    """File choosers and questions. Choosers return None when the user cancels."""

    def open_image(self, parent: QWidget, directory: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(parent, "Search with an image", directory, IMAGE_FILTER)
        return path or None

    def choose_folder(
        self, parent: QWidget, directory: str, caption: str = "Add a catalog folder"
    ) -> str | None:
        path = QFileDialog.getExistingDirectory(parent, caption, directory)
        return path or None

    def choose_weights_file(self, parent: QWidget, directory: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(
            parent, "Model weights file", directory, "Weights (*.bin *.pt *.pth *.safetensors);;All files (*)"
        )
        return path or None

    def open_file(self, parent: QWidget, caption: str, directory: str, file_filter: str) -> str | None:
        """Any file to read (a product sheet, a CA bundle); `caption` says which."""
        path, _ = QFileDialog.getOpenFileName(parent, caption, directory, file_filter)
        return path or None

    def save_csv(
        self, parent: QWidget, suggested: str, caption: str = "Export results"
    ) -> tuple[str, bool] | None:
        """(path, for Excel) or None; the Excel choice writes a BOM so Excel reads UTF-8."""
        path, chosen = QFileDialog.getSaveFileName(
            parent, caption, suggested, f"{CSV_FILTER};;{EXCEL_CSV_FILTER}"
        )
        if not path:
            return None
        if not path.lower().endswith(".csv"):
            path += ".csv"
        return path, chosen == EXCEL_CSV_FILTER

    def ask(
        self,
        parent: QWidget,
        title: str,
        text: str,
        buttons: Sequence[str],
        on_answer: Callable[[str | None], None],
        *,
        informative: str = "",
        default: str | None = None,
    ) -> None:
        """Ask with the given button labels (the first is the affirmative one); `on_answer`
        gets the chosen label, or None if the box was closed."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, parent)
        box.setInformativeText(informative)
        by_button = {}
        for i, label in enumerate(buttons):
            role = QMessageBox.ButtonRole.AcceptRole if i == 0 else QMessageBox.ButtonRole.RejectRole
            button = box.addButton(label, role)
            by_button[button] = label
            if label == (default or buttons[0]):
                box.setDefaultButton(button)

        def finished() -> None:
            on_answer(by_button.get(box.clickedButton()))
            box.deleteLater()

        box.finished.connect(finished)
        box.open()

    def show_error(self, parent: QWidget, title: str, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, parent)
        box.finished.connect(box.deleteLater)
        box.open()


class Desktop:
    """Opening files and folders with the user's own programs, and the system trash."""

    def move_to_trash(self, path: str) -> bool:
        """Move a file to the system trash (restorable from there); False when the platform has
        no trash for it. Never deletes. Safe on a worker thread (plain file system calls).

        Send2Trash first: it follows the freedesktop trash spec across devices (Qt refuses a
        file on another file system than the home trash), the macOS Trash and the Windows
        recycle bin; Qt's own trash when Send2Trash cannot."""
        try:
            send2trash(path)
            return True
        except OSError as exc:
            log.info("Send2Trash could not move %s to the trash (%s); trying Qt's trash", path, exc)
        result = QFile.moveToTrash(path)  # PySide6: (moved, path in the trash)
        return bool(result[0] if isinstance(result, tuple) else result)

    def open_file(self, path: str) -> bool:
        return QDesktopServices.openUrl(QUrl.fromLocalFile(path))

    def show_in_folder(self, path: str) -> bool:
        """Reveal the file in the file manager, selected where the platform allows it."""
        if sys.platform == "darwin":
            return QProcess.startDetached("open", ["-R", path])[0]
        if sys.platform == "win32":
            return QProcess.startDetached("explorer", ["/select,", os.path.normpath(path)])[0]
        if _show_items_dbus([path]):
            return True
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))


def _show_items_dbus(paths: Sequence[str]) -> bool:
    """freedesktop FileManager1.ShowItems: Nautilus, Dolphin, Nemo, Thunar... select the file."""
    try:
        from PySide6.QtDBus import QDBusConnection, QDBusInterface, QDBusMessage
    except ImportError:  # pragma: no cover - QtDBus is part of PySide6-Essentials on Linux
        return False
    bus = QDBusConnection.sessionBus()
    if not bus.isConnected():
        return False
    manager = QDBusInterface(
        "org.freedesktop.FileManager1", "/org/freedesktop/FileManager1", "org.freedesktop.FileManager1", bus
    )
    if not manager.isValid():
        return False
    reply = manager.call("ShowItems", [QUrl.fromLocalFile(p).toString() for p in paths], "")
    return reply.type() != QDBusMessage.MessageType.ErrorMessage
