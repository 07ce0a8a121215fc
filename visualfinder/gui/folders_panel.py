"""Catalog folders: each with its image count, skipped files and whether it is watched."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualfinder.gui import icons
from visualfinder.library.facade import FolderStatus
from visualfinder.paths import is_within, normalise

COL_FOLDER, COL_IMAGES, COL_WATCH = range(3)
PathRole = Qt.ItemDataRole.UserRole + 1


class FoldersPanel(QWidget):
    addRequested = Signal()
    removeRequested = Signal(str)
    watchToggled = Signal(str, bool)
    errorsRequested = Signal(str)  # folder path, or "" for every skipped file

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Folder", "Images", "Watch"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setAccessibleName("Catalog folders")
        self.tree.setMinimumHeight(72)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_FOLDER, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_IMAGES, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_WATCH, QHeaderView.ResizeMode.ResizeToContents)
        self.add_button = QToolButton(self)
        self.add_button.setToolTip("Add a catalog folder (or drop one on the window)")
        self.add_button.setAutoRaise(True)
        self.remove_button = QToolButton(self)
        self.remove_button.setToolTip("Remove the selected folder from the catalog (its files stay on disk)")
        self.remove_button.setAutoRaise(True)
        self.remove_button.setEnabled(False)
        self.errors_button = QToolButton(self)
        self.errors_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.errors_button.setAutoRaise(True)
        self.errors_button.setVisible(False)
        self.summary = QLabel(self)
        self.summary.setEnabled(False)

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.setSpacing(2)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self.errors_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)

        self._updating = False
        self._modes: dict[str, str] = {}
        self.add_button.clicked.connect(self.addRequested)
        self.remove_button.clicked.connect(self._remove_selected)
        self.errors_button.clicked.connect(lambda: self.errorsRequested.emit(""))
        self.tree.itemSelectionChanged.connect(
            lambda: self.remove_button.setEnabled(bool(self.tree.selectedItems()))
        )
        self.tree.itemChanged.connect(self._on_item_changed)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        self.refresh_icons()

    def refresh_icons(self) -> None:
        palette = self.palette()
        self.add_button.setIcon(icons.icon("folder-add", palette))
        self.remove_button.setIcon(icons.icon("folder-remove", palette))
        self.errors_button.setIcon(icons.icon("warning", palette))

    def set_folders(self, folders: list[FolderStatus]) -> None:
        selected = self.selected_path()
        self._updating = True
        self.tree.clear()
        palette = self.palette()
        skipped = 0
        for status in folders:
            path = status.folder.path
            item = QTreeWidgetItem()
            item.setData(COL_FOLDER, PathRole, path)
            item.setText(COL_FOLDER, Path(path).name or path)
            item.setText(COL_IMAGES, f"{status.ok:,}")
            item.setTextAlignment(COL_IMAGES, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            tip = [path, f"{status.ok:,} images"]
            if not status.exists:
                item.setIcon(COL_FOLDER, icons.icon("warning", palette))
                tip.append(
                    "Folder not found (deleted, renamed or on an unmounted drive); its images are kept"
                )
            else:
                item.setIcon(COL_FOLDER, icons.icon("folder", palette))
            if status.errors:
                skipped += status.errors
                item.setText(COL_IMAGES, f"{status.ok:,}  ({status.errors} skipped)")
                tip.append(f"{status.errors} files could not be read — double-click to see why")
            item.setToolTip(COL_FOLDER, "\n".join(tip))
            item.setToolTip(COL_IMAGES, "\n".join(tip[1:]))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                COL_WATCH, Qt.CheckState.Checked if status.folder.watched else Qt.CheckState.Unchecked
            )
            item.setToolTip(COL_WATCH, "Index new and changed files in this folder automatically")
            self.tree.addTopLevelItem(item)
            if path == selected:
                item.setSelected(True)
        self._updating = False
        self.set_watch_modes(self._modes)
        self.errors_button.setText(f"{skipped:,} skipped")
        self.errors_button.setToolTip("Files that could not be indexed, and why")
        self.errors_button.setVisible(skipped > 0)

    def set_watch_modes(self, modes: dict[str, str]) -> None:
        """How the watcher follows each folder: 'watching', 'polling' or 'missing' (from WatcherStatus)."""
        self._modes = dict(modes)
        self._updating = True
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            mode = self._modes.get(item.data(COL_FOLDER, PathRole), "")
            item.setText(COL_WATCH, {"polling": "polling", "missing": "missing"}.get(mode, ""))
            tip = {
                "watching": "Watched: changes are indexed as they happen",
                "polling": "Watched by rescanning every few seconds (a network drive, or notifications failed)",
                "missing": "The folder is gone or unmounted; its images are kept and it is watched again when it returns",
            }.get(mode, "Index new and changed files in this folder automatically")
            item.setToolTip(COL_WATCH, tip)
        self._updating = False

    def selected_path(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(COL_FOLDER, PathRole) if items else None

    def item_for(self, path: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.data(COL_FOLDER, PathRole) == path:
                return item
        return None

    def _remove_selected(self) -> None:
        path = self.selected_path()
        if path:
            self.removeRequested.emit(path)

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if not self._updating and column == COL_WATCH:
            self.watchToggled.emit(
                item.data(COL_FOLDER, PathRole), item.checkState(COL_WATCH) == Qt.CheckState.Checked
            )

    def _on_double_click(self, item: QTreeWidgetItem, column: int) -> None:
        if column != COL_WATCH:
            self.errorsRequested.emit(item.data(COL_FOLDER, PathRole))


class SkippedFilesDialog(QDialog):
    """Files that could not be indexed, with the reason for each (non-modal); *Retry skipped*
    tries them all again now."""

    retryRequested = Signal()

    def __init__(self, errors: list[tuple[str, str]], folder: str = "", truncated: bool = False, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Skipped files")
        self.resize(760, 420)
        shown = [(p, r) for p, r in errors if not folder or is_within(normalise(p), normalise(folder))]
        where = f" in {folder}" if folder else ""
        text = (
            f"{len(shown):,} file{'s' if len(shown) != 1 else ''}{where} could not be indexed. "
            "Fix or replace them and they are picked up the next time the folder is indexed."
            if shown else f"No skipped files{where}."
        )  # fmt: skip
        if truncated:
            text += " (showing the first ones)"
        label = QLabel(text, self)
        label.setWordWrap(True)
        self.table = QTreeWidget(self)
        self.table.setHeaderLabels(["File", "Reason"])
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        for path, reason in shown:
            item = QTreeWidgetItem([path, reason])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            self.table.addTopLevelItem(item)
        self.table.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(0, 400)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        self.retry_button = buttons.addButton("Retry skipped", QDialogButtonBox.ButtonRole.ActionRole)
        self.retry_button.setToolTip("Read every skipped file again now, changed or not")
        self.retry_button.setEnabled(bool(shown))
        self.retry_button.clicked.connect(self.retryRequested)
        self.retry_button.clicked.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
