"""What can be done with results: the context menu and its operations (find similar, open, show in
folder, copy path/image, copy/paste/edit tags) and the CSV export of what the grid keeps.

It receives the grid it acts on and reports through Feedback; a new query goes back to the
window through the `find_similar` callback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, QObject, QPoint, Qt, QThreadPool, QUrl
from PySide6.QtGui import QAction, QGuiApplication, QImage, QImageReader, QKeySequence
from PySide6.QtWidgets import QMenu, QWidget

from visualfinder.gui import icons
from visualfinder.gui.dialogs import Desktop, Dialogs
from visualfinder.gui.feedback import Feedback
from visualfinder.gui.results_model import ResultsModel
from visualfinder.gui.results_view import ResultsView
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.tags_dialog import TagsDialog
from visualfinder.gui.ui_state import UiState
from visualfinder.gui.workers import Job, run_in_pool
from visualfinder.search.planner import SearchResult

log = logging.getLogger(__name__)


class ResultActions(QObject):
    """Actions on the selected results of the grid; the window's menus and the context menu share them."""

    def __init__(self, view: ResultsView, model: ResultsModel, session: LibrarySession, feedback: Feedback,
                 dialogs: Dialogs, desktop: Desktop, ui: UiState, find_similar: Callable[[SearchResult], None],
                 query_name: Callable[[], str], parent: QWidget):  # fmt: skip
        super().__init__(parent)
        self.view = view
        self.model = model
        self.session = session
        self.feedback = feedback
        self.dialogs = dialogs
        self.desktop = desktop
        self.ui = ui
        self._search_similar = find_similar
        self._query_name = query_name  # names the export file
        self.parent_widget = parent
        self.tags_dialog: TagsDialog | None = None
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.copied_tags: list[str] = []
        self.find_similar = self._action("find-similar", "&Find similar", self.find_similar_to_selected,
                                         "Search with this image", QKeySequence("Ctrl+Return"))  # fmt: skip
        self.open = self._action(
            "open", "&Open", self.open_selected, "Open with the default app", QKeySequence("Return")
        )
        self.show_in_folder = self._action("show-folder", "Show in &folder", self.show_selected_in_folder,
                                           "Show the file in the file manager")  # fmt: skip
        self.copy_image = self._action("copy", "&Copy image", self.copy_selected_image,
                                       "Copy the image (and its file) to the clipboard", QKeySequence.StandardKey.Copy)  # fmt: skip
        self.copy_path = self._action(None, "Copy &path", self.copy_selected_paths, "Copy the file path",
                                      QKeySequence("Ctrl+Shift+C"))  # fmt: skip
        self.copy_tags = self._action(None, "Copy &tags", self.copy_selected_tags, "Copy this image's tags")
        self.paste_tags = self._action(None, "P&aste tags", self.paste_tags_to_selected,
                                       "Add the copied tags to the selected images")  # fmt: skip
        self.edit_tags = self._action("tag", "&Edit tags…", self.edit_selected_tags, "Edit the tags",
                                      QKeySequence("Ctrl+T"))  # fmt: skip
        self.all = [self.find_similar, self.open, self.show_in_folder, self.copy_image, self.copy_path,
                    self.copy_tags, self.paste_tags, self.edit_tags]  # fmt: skip
        for action in self.all:
            action.setObjectName(
                action.text().replace("&", "").replace("…", "").strip().lower().replace(" ", "_")
            )
            self.view.addAction(action)
        self.find_similar.setShortcutVisibleInContextMenu(True)
        self.update_enabled()

    def _action(self, icon: str | None, text: str, slot: Callable[[], None], tip: str,
                shortcut: QKeySequence | QKeySequence.StandardKey | None = None) -> QAction:  # fmt: skip
        action = QAction(text, self.parent_widget)
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.setData(icon)
        if icon:
            action.setIcon(icons.icon(icon, self.parent_widget.palette()))
        if shortcut is not None:
            action.setShortcut(shortcut)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(slot)
        return action

    def refresh_icons(self) -> None:
        for action in self.all:
            if action.data():
                action.setIcon(icons.icon(action.data(), self.parent_widget.palette()))

    # --- selection -----------------------------------------------------------------------

    def selected(self) -> list[SearchResult]:
        view = self.view
        return self.model.results(view.selectionModel().selectedIndexes())

    def current(self) -> SearchResult | None:
        selected = self.selected()
        if selected:
            return selected[0]
        index = self.view.currentIndex()
        return self.model.result(index.row()) if index.isValid() else None

    def update_enabled(self) -> None:
        count = len(self.selected())
        for action in self.all:
            action.setEnabled(count > 0)
        self.find_similar.setEnabled(count == 1)
        self.copy_tags.setEnabled(count == 1)
        self.paste_tags.setEnabled(count > 0 and bool(self.copied_tags))
        if self.copied_tags:
            self.paste_tags.setText(f"P&aste tags ({', '.join(self.copied_tags)[:40]})")

    def menu(self, position: QPoint | None = None) -> QMenu:
        """The context menu for the selection (or the item at `position` in the view)."""
        view = self.view
        if position is not None:
            index = view.indexAt(position)
            if index.isValid() and not view.selectionModel().isSelected(index):
                view.setCurrentIndex(index)
        self.update_enabled()
        menu = QMenu(view)
        for action in self.menu_items:
            menu.addSeparator() if action is None else menu.addAction(action)
        menu.setDefaultAction(self.find_similar)
        return menu

    @property
    def menu_items(self) -> list[QAction | None]:
        """The context menu's and the Edit menu's result actions, in order (None: a separator)."""
        return [self.find_similar, None, self.open, self.show_in_folder, None, self.copy_image, self.copy_path,
                None, self.copy_tags, self.paste_tags, self.edit_tags]  # fmt: skip

    def show_menu(self, position: QPoint) -> None:
        if not self.view.indexAt(position).isValid():
            return
        menu = self.menu(position)
        menu.aboutToHide.connect(menu.deleteLater)
        menu.popup(self.view.viewport().mapToGlobal(position))

    # --- operations ----------------------------------------------------------------------

    def find_similar_to_selected(self) -> None:
        result = self.current()
        if result is not None:
            self._search_similar(result)

    def open_selected(self) -> None:
        for result in self.selected()[:20]:  # a stray Enter on 5,000 results must not open them all
            if not self.desktop.open_file(result.path):
                self.feedback.error(f"cannot open {result.path}: no application is set up for it")

    def show_selected_in_folder(self) -> None:
        for result in self.selected()[:5]:
            self.desktop.show_in_folder(result.path)

    def copy_selected_paths(self) -> None:
        paths = [r.path for r in self.selected()]
        if paths:
            QGuiApplication.clipboard().setText("\n".join(paths))
            self.feedback.note(f"Copied {len(paths)} path{'s' if len(paths) > 1 else ''}", 3000)

    def copy_selected_image(self) -> None:
        """The image itself (decoded on the pool: a big photo takes longer than a frame) plus its file."""
        selected = self.selected()
        if not selected:
            return
        paths = [r.path for r in selected]

        def load() -> QImage:
            reader = QImageReader(paths[0])
            reader.setAutoTransform(True)
            return reader.read()

        def done(image: QImage) -> None:
            mime = QMimeData()
            if not image.isNull():
                mime.setImageData(image)
            mime.setUrls([QUrl.fromLocalFile(p) for p in paths])
            mime.setText("\n".join(paths))
            QGuiApplication.clipboard().setMimeData(mime)
            self.feedback.note("Copied the image" if len(paths) == 1 else f"Copied {len(paths)} files", 3000)

        run_in_pool(self.pool, load, done)

    def copy_selected_tags(self) -> None:
        result = self.current()
        if result is None:
            return
        self.copied_tags = list(result.record.tags)
        QGuiApplication.clipboard().setText(", ".join(self.copied_tags))
        self.feedback.note(
            f"Copied tags: {', '.join(self.copied_tags)}" if self.copied_tags else "This image has no tags",
            3000,
        )
        self.update_enabled()

    def paste_tags_to_selected(self) -> None:
        selected = self.selected()
        if selected and self.copied_tags:
            self.change_tags([r.id for r in selected], self.copied_tags, [])

    def edit_selected_tags(self) -> None:
        selected = self.selected()
        if not selected:
            return
        known = [tag for tag, _ in self.session.snapshot.tags] if self.session.snapshot else []
        dialog = TagsDialog(selected, known, self.parent_widget)
        dialog.tagsEdited.connect(self.change_tags)
        self.tags_dialog = dialog
        dialog.finished.connect(lambda _: setattr(self, "tags_dialog", None))
        dialog.open()

    def change_tags(self, image_ids: list[int], add: list[str], remove: list[str]) -> Job:
        job = self.session.edit_tags(image_ids, add, remove)
        job.succeeded.connect(self.model.update_tags)
        job.failed.connect(self.feedback.error)
        return job

    # --- export --------------------------------------------------------------------------

    def export_csv(self) -> Job | None:
        """The results the grid keeps (above the threshold), in its order, to a CSV file."""
        results = self.model.kept()
        if not results:
            self.feedback.note("No results to export", 4000)
            return None
        suggested = str(Path(self.ui.last_export_dir) / f"visualfinder-{_safe_name(self._query_name())}.csv")
        choice = self.dialogs.save_csv(self.parent_widget, suggested)
        if choice is None:
            return None
        dest, excel = choice
        self.ui.last_export_dir = str(Path(dest).parent)
        job = self.session.export_csv(results, dest, excel)
        job.succeeded.connect(
            lambda path: self.feedback.note(f"Exported {len(results):,} results to {path}", 8000)
        )
        job.failed.connect(self.feedback.error)
        return job


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")
    return cleaned[:60] or "results"
