"""Builds the main window's widgets, actions, menus, toolbar and status bar (like a Designer form).

`setup(window, ...)` sets the widgets and actions as attributes of the window and
`build_menus_and_toolbar` lays them out; main_window.py connects them to behaviour. Nothing here
knows the window's class.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QSizePolicy,
    QSlider,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from visualfinder.gui import icons
from visualfinder.gui.filters_panel import FiltersPanel
from visualfinder.gui.folders_panel import FoldersPanel
from visualfinder.gui.pages import EmptyState
from visualfinder.gui.query_panel import QueryPanel
from visualfinder.gui.results_view import ICON_SIZES, ResultsView
from visualfinder.gui.status_widgets import MessageBar, ProgressPanel

PAGE_OPENING, PAGE_EMPTY, PAGE_READY, PAGE_RESULTS, PAGE_NO_RESULTS = range(5)


def setup(window: QMainWindow, results_view: ResultsView, icon_size: int, watch_new_folders: bool) -> None:
    _build_widgets(window, results_view, icon_size)
    _build_actions(window, watch_new_folders)
    _build_status_bar(window)


def _build_widgets(self: QMainWindow, results_view: ResultsView, icon_size: int) -> None:
    self.query_panel = QueryPanel(self)
    self.filters = FiltersPanel(self)
    self.folders_panel = FoldersPanel(self)
    sidebar = QWidget(self)
    sidebar.setObjectName("sidebar")
    side = QVBoxLayout(sidebar)
    side.setContentsMargins(10, 10, 6, 8)
    side.setSpacing(6)
    side.addWidget(_section("Query"))
    side.addWidget(self.query_panel, 3)
    side.addSpacing(6)
    side.addWidget(_section("Filters"))
    side.addWidget(self.filters)
    side.addSpacing(6)
    side.addWidget(_section("Catalog folders"))
    side.addWidget(self.folders_panel, 2)
    sidebar.setMinimumWidth(250)

    self.message_bar = MessageBar(self)
    self.summary = QLabel(self)
    self.summary.setTextFormat(Qt.TextFormat.PlainText)
    self.stale_button = QToolButton(self)
    self.stale_button.setText("Library changed — refresh")
    self.stale_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    self.stale_button.setAutoRaise(True)
    self.stale_button.setVisible(False)
    self.stale_button.setIcon(icons.icon("refresh", self.palette()))
    self.zoom = QSlider(Qt.Orientation.Horizontal, self)
    self.zoom.setRange(0, len(ICON_SIZES) - 1)
    self.zoom.setFixedWidth(110)
    self.zoom.setToolTip("Thumbnail size")
    self.zoom.setValue(nearest_size_index(icon_size))
    self.zoom.setVisible(False)  # shown with results
    header = QHBoxLayout()
    header.setContentsMargins(6, 0, 6, 0)
    header.addWidget(self.summary, 1)
    header.addWidget(self.stale_button)
    header.addWidget(self.zoom)

    self.empty_page = EmptyState(
        "drop-folder",
        "Drop a folder here",
        "Add a folder of product photos to build your catalog. visualfinder indexes "
        "every image in it (and its subfolders) on this computer.",
        "Add folder…",
        self,
    )
    self.ready_page = EmptyState(
        "drop-image",
        "Drop an image to search",
        "Drop a product photo here, paste one with Ctrl+V, or describe what you are "
        "looking for in the search box.",
        "Open image…",
        self,
    )
    self.no_results_page = EmptyState(
        "search",
        "No results",
        "Nothing matches the filters. Choose another folder or tag, or lower the similarity threshold.",
        "",
        self,
    )
    self.opening_page = EmptyState("drop-image", "Opening the library…", "", "", self)
    self.pages = QStackedWidget(self)
    for page in (
        self.opening_page,
        self.empty_page,
        self.ready_page,
        results_view,
        self.no_results_page,
    ):
        self.pages.addWidget(page)

    right = QWidget(self)
    column = QVBoxLayout(right)
    column.setContentsMargins(4, 8, 8, 0)
    column.setSpacing(6)
    column.addWidget(self.message_bar)
    column.addLayout(header)
    column.addWidget(self.pages, 1)

    self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
    self.splitter.addWidget(sidebar)
    self.splitter.addWidget(right)
    self.splitter.setStretchFactor(1, 1)
    self.splitter.setSizes([300, 900])
    self.splitter.setChildrenCollapsible(False)
    self.setCentralWidget(self.splitter)

    self.search_field = QLineEdit(self)
    self.search_field.setPlaceholderText("Describe what to find…  (tag:oak  price:<50  -leather)")
    self.search_field.setToolTip(
        "<qt>Words describe what to find (CLIP text); <b>-word</b> means less like this.<br>"
        "Filters: <b>folder:</b>name <b>tag:</b>oak <b>type:</b>png <b>after:</b>2025-01 <b>before:</b>7d "
        "<b>size:</b>&gt;2mb <b>sku:</b> <b>title:</b> <b>price:</b>&lt;50 or 10..50, and imported columns "
        "(<b>colour:</b>red).</qt>"
    )
    self.search_field.setClearButtonEnabled(True)
    self.search_field.setMinimumWidth(240)
    self.search_field.setMaximumWidth(560)
    self.search_field.setAccessibleName("Text search")
    self.search_field.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    self.search_icon = self.search_field.addAction(
        icons.icon("search", self.palette()), QLineEdit.ActionPosition.LeadingPosition
    )


def _action(self: QMainWindow, icon: str | None, text: str, shortcut=None, tip: str = "") -> QAction:
    action = QAction(text, self)
    action.setData(icon)
    if icon:
        action.setIcon(icons.icon(icon, self.palette()))
    if shortcut is not None:
        action.setShortcut(shortcut)
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    self.addAction(action)
    return action


def _build_actions(self: QMainWindow, watch_new_folders: bool) -> None:
    K = QKeySequence
    self.open_image_action = _action(
        self, "open-image", "&Open image…", K.StandardKey.Open, "Search with an image file"
    )
    self.paste_action = _action(
        self,
        "paste",
        "&Paste image",
        K.StandardKey.Paste,
        "Search with the image on the clipboard",
    )
    self.add_folder_action = _action(
        self,
        "folder-add",
        "&Add folder…",
        K("Ctrl+Shift+O"),
        "Add a folder of images to the catalog",
    )
    self.export_action = _action(
        self,
        "export",
        "&Export results…",
        K("Ctrl+E"),
        "Export the results to a CSV file",
    )
    self.import_action = _action(
        self,
        None,
        "&Import product data…",
        None,
        "Titles, SKUs, prices and tags from a CSV, JSON or JSON Lines file",
    )
    self.settings_action = _action(
        self,
        "settings",
        "&Settings…",
        K("Ctrl+,"),
        "Model, device, thumbnails, data folder",
    )
    self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
    self.refresh_action = _action(
        self,
        "refresh",
        "&Refresh",
        K.StandardKey.Refresh,
        "Search again and re-read the library",
    )
    self.reindex_action = _action(
        self,
        None,
        "&Update all folders",
        None,
        "Index new and changed files in every catalog folder",
    )
    self.duplicates_action = _action(
        self, None, "Find &duplicates…", K("Ctrl+D"), "Review identical, same and similar pictures"
    )
    self.batch_action = _action(
        self,
        None,
        "&Match a folder of photos…",
        K("Ctrl+M"),
        "Find the catalog matches of every photo in a folder",
    )
    self.retry_skipped_action = _action(
        self, None, "Retry s&kipped files", None, "Read every skipped file again now, changed or not"
    )
    self.clear_action = _action(self, "clear", "&Clear query", K("Ctrl+Shift+Backspace"))
    self.focus_search_action = _action(self, "search", "&Search by text", K.StandardKey.Find)
    self.quit_action = _action(self, None, "&Quit", K.StandardKey.Quit)
    self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
    self.about_action = _action(self, None, "&About visualfinder")
    self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
    self.zoom_in_action = _action(
        self,
        None,
        "Larger thumbnails",
        K.StandardKey.ZoomIn,
    )
    self.zoom_out_action = _action(
        self,
        None,
        "Smaller thumbnails",
        K.StandardKey.ZoomOut,
    )
    self.watch_new_action = QAction("&Watch added folders", self, checkable=True)
    self.watch_new_action.setChecked(watch_new_folders)
    self.watch_new_action.setStatusTip("Index new and changed files in added folders automatically")


def build_menus_and_toolbar(
    self: QMainWindow, result_items: list[QAction | None], watch_action: QAction
) -> QMenu:
    """The menus and the toolbar; `result_items` are the Edit menu's result actions (None: a
    separator). Returns the Edit menu, whose result actions are enabled as it opens."""
    bar = self.menuBar()
    file_menu = bar.addMenu("&File")
    for action in (
        self.open_image_action,
        self.paste_action,
        self.batch_action,
        None,
        self.add_folder_action,
        self.reindex_action,
        self.retry_skipped_action,
        watch_action,
        self.watch_new_action,
        None,
        self.export_action,
        self.import_action,
        None,
        self.settings_action,
        None,
        self.quit_action,
    ):
        file_menu.addSeparator() if action is None else file_menu.addAction(action)
    edit_menu = bar.addMenu("&Edit")
    for action in (
        *result_items,
        None,
        self.duplicates_action,
        None,
        self.clear_action,
        self.focus_search_action,
    ):
        edit_menu.addSeparator() if action is None else edit_menu.addAction(action)
    view_menu = bar.addMenu("&View")
    for action in (self.refresh_action, None, self.zoom_in_action, self.zoom_out_action):
        view_menu.addSeparator() if action is None else view_menu.addAction(action)
    help_menu = bar.addMenu("&Help")
    help_menu.addAction(self.about_action)

    toolbar = self.addToolBar("Main")
    toolbar.setObjectName("mainToolBar")
    toolbar.setMovable(False)
    toolbar.setIconSize(QSize(20, 20))
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    self.open_image_action.setIconText("Open image")
    self.paste_action.setIconText("Paste")
    self.add_folder_action.setIconText("Add folder")
    self.export_action.setIconText("Export CSV")
    for action in (self.open_image_action, self.paste_action, self.add_folder_action, self.export_action):
        toolbar.addAction(action)
    toolbar.addSeparator()
    toolbar.addWidget(self.search_field)
    spacer = QWidget(self)
    spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    toolbar.addWidget(spacer)
    settings_button = QToolButton(self)
    settings_button.setDefaultAction(self.settings_action)
    settings_button.setAutoRaise(True)
    settings_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    toolbar.addWidget(settings_button)
    self.toolbar = toolbar
    return edit_menu


def _build_status_bar(self: QMainWindow) -> None:
    status = self.statusBar()
    self.progress = ProgressPanel(self)
    self.library_label = QLabel(self)
    self.model_label = QLabel(self)
    self.watcher_label = QLabel(self)
    self.watcher_label.setVisible(False)
    self.sync_label = QLabel(self)
    self.sync_label.setVisible(False)
    for label in (self.watcher_label, self.sync_label, self.library_label, self.model_label):
        label.setContentsMargins(12, 0, 4, 0)  # room between the facts, as a native status bar has
    status.addPermanentWidget(self.progress)
    status.addPermanentWidget(self.watcher_label)
    status.addPermanentWidget(self.sync_label)
    status.addPermanentWidget(self.library_label)
    status.addPermanentWidget(self.model_label)


def _section(title: str) -> QLabel:
    label = QLabel(title.upper())
    label.setObjectName("sectionTitle")
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 0.85)
    font.setWeight(font.Weight.Bold)
    font.setLetterSpacing(font.SpacingType.PercentageSpacing, 108)
    label.setFont(font)
    label.setEnabled(False)  # the palette's muted text colour
    return label


def nearest_size_index(size: int) -> int:
    return min(range(len(ICON_SIZES)), key=lambda i: abs(ICON_SIZES[i] - size))
