"""The review windows: Find duplicates and Match a folder of photos, one window each.

It receives the session, the dialogs and desktop, and a `show_matches` callback (the main
window's search with a photo), never the window itself."""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

from visualfinder.gui.batch_view import BatchMatchWindow
from visualfinder.gui.dialogs import Desktop, Dialogs
from visualfinder.gui.duplicates_view import DuplicatesWindow
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.ui_state import UiState


class ReviewActions(QObject):
    def __init__(self, session: LibrarySession, dialogs: Dialogs, desktop: Desktop, ui: UiState,
                 show_matches: Callable[[str], None], parent: QWidget):  # fmt: skip
        super().__init__(parent)
        self.session = session
        self.dialogs = dialogs
        self.desktop = desktop
        self.ui = ui
        self._show_matches = show_matches
        self.parent_widget = parent
        self.duplicates_window: DuplicatesWindow | None = None
        self.batch_window: BatchMatchWindow | None = None

    def show_duplicates(self) -> DuplicatesWindow | None:
        """Open the duplicates window (or bring it forward) and find the groups."""
        if not self.session.is_open:
            return None
        window = self.duplicates_window
        if window is None or not shiboken6.isValid(window):
            window = DuplicatesWindow(self.session, self.dialogs, self.desktop, self.ui.last_export_dir,
                                      self.parent_widget)  # fmt: skip
            self.duplicates_window = window
            window.find()
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def match_folder(self, folder: str | None = None) -> BatchMatchWindow | None:
        """Ask for a folder of photos (unless given) and match each against the catalog."""
        if not self.session.is_open:
            return None
        folder = folder or self.dialogs.choose_folder(self.parent_widget, self.ui.last_folder_dir,
                                                      "Match a folder of photos")  # fmt: skip
        if not folder:
            return None
        if self.batch_window is not None and shiboken6.isValid(self.batch_window):
            self.batch_window.close()
        window = BatchMatchWindow(self.session, self.dialogs, folder, self._show_matches, self.ui.last_export_dir,
                                  parent=self.parent_widget)  # fmt: skip
        self.batch_window = window
        window.show()
        window.match()
        return window

    def close_all(self) -> None:
        for window in (self.duplicates_window, self.batch_window):
            if window is not None and shiboken6.isValid(window):
                window.close()
