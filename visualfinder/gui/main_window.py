"""The main window: query on the left, results grid on the right, library state in the status bar.

It validates on the GUI thread and hands every library call to the LibrarySession (jobs on
worker threads); results come back as signals. Nothing here blocks on I/O.
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, QSize, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QSizePolicy,
    QSlider,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from visualfinder import __version__
from visualfinder.events import JobProgress, LibraryChanged, WatcherStatus
from visualfinder.gui import icons
from visualfinder.gui.dialogs import Desktop, Dialogs
from visualfinder.gui.filters_panel import FiltersPanel
from visualfinder.gui.folders_panel import FoldersPanel, SkippedFilesDialog
from visualfinder.gui.pages import EmptyState
from visualfinder.gui.query import QueryImage, QuerySource, file_source, indexed_source, load_query, read_mime
from visualfinder.gui.query_panel import QueryPanel
from visualfinder.gui.result_actions import ResultActions
from visualfinder.gui.results_model import ResultsModel
from visualfinder.gui.results_view import ICON_SIZES, ResultsView
from visualfinder.gui.session import STATUS_ERROR_LIMIT, LibrarySession, Snapshot, response_summary
from visualfinder.gui.settings_dialog import SettingsDialog
from visualfinder.gui.status_widgets import MessageBar, ProgressPanel
from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.gui.ui_state import UiState
from visualfinder.gui.workers import Job
from visualfinder.pipeline import IndexReport
from visualfinder.search import SearchResult
from visualfinder.service import QueryTerm, SearchRequest, SearchResponse

log = logging.getLogger(__name__)

PAGE_OPENING, PAGE_EMPTY, PAGE_READY, PAGE_RESULTS, PAGE_NO_RESULTS = range(5)


class MainWindow(QMainWindow):
    queryShown = Signal(object)  # QueryImage
    resultsShown = Signal(object)  # SearchResponse
    errorShown = Signal(str)

    def __init__(self, session: LibrarySession, ui_settings: QSettings, dialogs: Dialogs | None = None,
                 desktop: Desktop | None = None, parent: QWidget | None = None):  # fmt: skip
        super().__init__(parent)
        self.session = session
        self.ui = UiState(ui_settings)
        self.dialogs = dialogs or Dialogs()
        self.desktop = desktop or Desktop()
        self.query: QueryImage | None = None
        self.query_text = ""
        self.response: SearchResponse | None = None
        self.tags_dialog = None
        self.settings_dialog: SettingsDialog | None = None
        self._pending_sources: list[QuerySource] = []
        self._offer_reembed = False
        self._closing = False
        self._stale = False
        self.setWindowTitle("visualfinder")
        self.setWindowIcon(icons.app_icon())
        self.setAcceptDrops(True)

        self.thumbnails = ThumbnailLoader(self.ui.icon_size, self.devicePixelRatioF(), parent=self)
        self.results_model = ResultsModel(self.thumbnails, self)
        self.results_view = ResultsView(self.ui.icon_size, self)
        self.results_view.setModel(self.results_model)
        self.result_actions = ResultActions(self)
        self._build_widgets()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._build_status_bar()
        self._connect()
        self.ui.restore_window(self)
        self.ui.restore_filters(self.filters)
        self._apply_view_options()
        self.set_library_open(False)
        self.pages.setCurrentIndex(PAGE_OPENING)

    # --- construction --------------------------------------------------------------------

    def _build_widgets(self) -> None:
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
        self.zoom = QSlider(Qt.Orientation.Horizontal, self)
        self.zoom.setRange(0, len(ICON_SIZES) - 1)
        self.zoom.setFixedWidth(110)
        self.zoom.setToolTip("Thumbnail size")
        self.zoom.setValue(_nearest_size_index(self.ui.icon_size))
        header = QHBoxLayout()
        header.setContentsMargins(6, 0, 6, 0)
        header.addWidget(self.summary, 1)
        header.addWidget(self.stale_button)
        header.addWidget(self.zoom)

        self.empty_page = EmptyState("drop-folder", "Drop a folder here",
                                     "Add a folder of product photos to build your catalog. visualfinder indexes "
                                     "every image in it (and its subfolders) on this computer.",
                                     "Add folder…", self)  # fmt: skip
        self.ready_page = EmptyState("drop-image", "Drop an image to search",
                                     "Drop a product photo here, paste one with Ctrl+V, or describe what you are "
                                     "looking for in the search box.", "Open image…", self)  # fmt: skip
        self.no_results_page = EmptyState("search", "No results", "Nothing matches the filters. Choose another "
                                          "folder or tag, or lower the similarity threshold.", "", self)  # fmt: skip
        self.opening_page = EmptyState("drop-image", "Opening the library…", "", "", self)
        self.pages = QStackedWidget(self)
        for page in (
            self.opening_page,
            self.empty_page,
            self.ready_page,
            self.results_view,
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
        self.search_field.setPlaceholderText("Describe what to find…")
        self.search_field.setClearButtonEnabled(True)
        self.search_field.setMinimumWidth(260)
        self.search_field.setAccessibleName("Text search")
        self.search_field.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def _action(self, icon: str | None, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setData(icon)
        if icon:
            action.setIcon(icons.icon(icon, self.palette()))
        if shortcut is not None:
            action.setShortcut(shortcut)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        K = QKeySequence
        self.open_image_action = self._action("open-image", "&Open image…", self.open_image, K.StandardKey.Open,
                                              "Search with an image file")  # fmt: skip
        self.paste_action = self._action("paste", "&Paste image", self.paste, K.StandardKey.Paste,
                                         "Search with the image on the clipboard")  # fmt: skip
        self.add_folder_action = self._action("folder-add", "&Add folder…", self.add_folder, K("Ctrl+Shift+O"),
                                              "Add a folder of images to the catalog")  # fmt: skip
        self.export_action = self._action("export", "&Export results…", self.export_csv, K("Ctrl+E"),
                                          "Export the results to a CSV file")  # fmt: skip
        self.settings_action = self._action("settings", "&Settings…", self.open_settings, K("Ctrl+,"),
                                            "Model, device, thumbnails, data folder")  # fmt: skip
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.refresh_action = self._action("refresh", "&Refresh", self.refresh, K.StandardKey.Refresh,
                                           "Search again and re-read the library")  # fmt: skip
        self.reindex_action = self._action(None, "&Update all folders", self.reindex_all, None,
                                           "Index new and changed files in every catalog folder")  # fmt: skip
        self.clear_action = self._action("clear", "&Clear query", self.clear_query, K("Ctrl+Shift+Backspace"))
        self.focus_search_action = self._action("search", "&Search by text", self.search_field.setFocus,
                                                K.StandardKey.Find)  # fmt: skip
        self.quit_action = self._action(None, "&Quit", self.close, K.StandardKey.Quit)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.about_action = self._action(None, "&About visualfinder", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.zoom_in_action = self._action(None, "Larger thumbnails", lambda: self.zoom.setValue(self.zoom.value() + 1),
                                           K.StandardKey.ZoomIn)  # fmt: skip
        self.zoom_out_action = self._action(None, "Smaller thumbnails", lambda: self.zoom.setValue(self.zoom.value() - 1),
                                            K.StandardKey.ZoomOut)  # fmt: skip
        self.watch_new_action = QAction("&Watch added folders", self, checkable=True)
        self.watch_new_action.setChecked(self.ui.watch_new_folders)
        self.watch_new_action.setStatusTip("Index new and changed files in added folders automatically")
        self.watch_new_action.toggled.connect(self.ui.set_watch_new_folders)

    def _build_menus_and_toolbar(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for action in (self.open_image_action, self.paste_action, None, self.add_folder_action, self.reindex_action,
                       self.watch_new_action, None, self.export_action, None, self.settings_action, None,
                       self.quit_action):  # fmt: skip
            file_menu.addSeparator() if action is None else file_menu.addAction(action)
        edit_menu = bar.addMenu("&Edit")
        ra = self.result_actions
        for action in (ra.find_similar, ra.open, ra.show_in_folder, None, ra.copy_image, ra.copy_path, None,
                       ra.copy_tags, ra.paste_tags, ra.edit_tags, None, self.clear_action, self.focus_search_action):  # fmt: skip
            edit_menu.addSeparator() if action is None else edit_menu.addAction(action)
        edit_menu.aboutToShow.connect(ra.update_enabled)
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
        spacer.setFixedWidth(6)
        toolbar.addWidget(spacer)
        settings_button = QToolButton(self)
        settings_button.setDefaultAction(self.settings_action)
        settings_button.setAutoRaise(True)
        settings_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        toolbar.addWidget(settings_button)
        self.toolbar = toolbar

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.progress = ProgressPanel(self)
        self.library_label = QLabel(self)
        self.model_label = QLabel(self)
        self.watcher_label = QLabel(self)
        self.watcher_label.setVisible(False)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.watcher_label)
        status.addPermanentWidget(self.library_label)
        status.addPermanentWidget(self.model_label)

    def _connect(self) -> None:
        s = self.session
        s.opened.connect(self._on_opened)
        s.openFailed.connect(self._on_open_failed)
        s.snapshotChanged.connect(self._on_snapshot)
        s.libraryChanged.connect(self._on_library_changed)
        s.externalProgress.connect(self._on_external_progress)
        s.watcherStatus.connect(self._on_watcher_status)
        s.closed.connect(self._on_session_closed)
        self.query_panel.cropChanged.connect(lambda _: self.run_search())
        self.query_panel.clearRequested.connect(self.clear_query)
        self.query_panel.browseRequested.connect(self.open_image)
        self.filters.searchChanged.connect(self.run_search)
        self.filters.viewChanged.connect(self._apply_view_options)
        self.folders_panel.addRequested.connect(self.add_folder)
        self.folders_panel.removeRequested.connect(self.remove_folder)
        self.folders_panel.watchToggled.connect(self.set_watched)
        self.folders_panel.errorsRequested.connect(self.show_skipped)
        self.empty_page.buttonClicked.connect(self.add_folder)
        self.ready_page.buttonClicked.connect(self.open_image)
        self.search_field.returnPressed.connect(self._on_text_entered)
        self.stale_button.clicked.connect(self.run_search)
        self.zoom.valueChanged.connect(lambda i: self.set_icon_size(ICON_SIZES[i]))
        self.results_view.customContextMenuRequested.connect(self.result_actions.show_menu)
        self.results_view.doubleClicked.connect(lambda _: self.result_actions.open_selected())
        self.results_view.selectionModel().selectionChanged.connect(
            lambda *_: self.result_actions.update_enabled()
        )
        self.message_bar.linkActivated.connect(self._on_message_link)

    # --- library lifecycle ---------------------------------------------------------------

    def set_library_open(self, is_open: bool) -> None:
        for action in (self.open_image_action, self.paste_action, self.add_folder_action, self.refresh_action,
                       self.reindex_action):  # fmt: skip
            action.setEnabled(is_open)
        self.export_action.setEnabled(is_open and bool(self.results_model.kept()))
        self.search_field.setEnabled(is_open)
        self.folders_panel.add_button.setEnabled(is_open)

    def _on_opened(self, library) -> None:
        self.set_library_open(True)
        if self.message_bar.kind == "error":
            self.message_bar.dismiss()
        self.pages.setCurrentIndex(PAGE_READY if self.results_model.total == 0 else PAGE_RESULTS)
        self._update_model_label()
        job = self.session.load_model()
        self.progress.start(job, "Loading the model")
        job.progressed.connect(lambda p, job=job: self.progress.update_progress(job, p))
        job.finished.connect(lambda job=job: self.progress.finish(job))
        job.failed.connect(lambda message: self.show_error(message, settings_link=True))
        for source in self._pending_sources:
            self.search_source(source)
        self._pending_sources.clear()

    def _on_open_failed(self, message: str) -> None:
        self.set_library_open(False)
        self.opening_page.set_text("The library could not be opened", message)
        self.pages.setCurrentIndex(PAGE_OPENING)
        self.show_error(message, settings_link=True)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        status = snapshot.status
        stats = status.stats
        self.library_label.setText(f"{stats.ok:,} image{'s' if stats.ok != 1 else ''}")
        self.library_label.setToolTip(
            f"{stats.ok:,} images in {stats.folders} folder{'s' if stats.folders != 1 else ''}, "
            f"{stats.errors:,} skipped\nData folder: {status.data_dir}\nIndex: {status.index_count:,} vectors, "
            f"{status.metric}, {status.index_health}"
        )
        self._update_model_label(snapshot)
        self.folders_panel.set_folders(status.folders)
        self.filters.set_folders([f.folder for f in status.folders])
        self.filters.set_tags(snapshot.tags)
        self.ui.restore_filter_choice(self.filters)
        if self.pages.currentIndex() in (PAGE_EMPTY, PAGE_READY, PAGE_OPENING) and self.session.is_open:
            empty = snapshot.is_empty and not status.folders
            self.pages.setCurrentIndex(PAGE_EMPTY if empty else PAGE_READY)
            if not empty:
                self.ready_page.set_text(text=f"Drop a product photo here, paste one with Ctrl+V, or describe what "
                                              f"you are looking for. {stats.ok:,} images are ready to search.")  # fmt: skip
        if stats.needs_embedding:
            self._offer_reembedding(stats.needs_embedding)

    def _update_model_label(self, snapshot: Snapshot | None = None) -> None:
        settings = self.session.settings
        device = snapshot.device if snapshot else settings.device
        pretrained = settings.pretrained if len(settings.pretrained) <= 24 else Path(settings.pretrained).name
        self.model_label.setText(f"{settings.model} · {device}")
        self.model_label.setToolTip(f"Model {settings.model}, weights {pretrained}, running on {device}")

    def _offer_reembedding(self, count: int) -> None:
        if self._offer_reembed:
            self._offer_reembed = False
            self.dialogs.ask(
                self, "Re-embed the library?",
                f"{count:,} images were embedded with another model. Embed them with "
                f"{self.session.settings.model} now?",
                ["Re-embed now", "Later"],
                lambda answer: self.reindex_all() if answer == "Re-embed now" else None,
                informative="Searching finds only the images embedded with the current model. Re-embedding "
                "runs in the background and can be stopped; what is done is kept.",
            )  # fmt: skip
        elif not self._jobs_named("Indexing"):
            self.show_message(f"{count:,} images were embedded with another model and are not searched yet. "
                              "<a href='reindex'>Embed them now</a>", "warning", rich=True)  # fmt: skip

    # --- queries -------------------------------------------------------------------------

    def search_file(self, path: str | os.PathLike) -> None:
        self.search_source(file_source(path))

    def find_similar(self, result: SearchResult) -> None:
        self.search_source(indexed_source(result.id, result.path))

    def search_source(self, source: QuerySource) -> None:
        """Decode the query (on the reader), show it, then search."""
        if not self.session.is_open:
            self._pending_sources = [source]
            return
        if source.path:
            self.ui.last_image_dir = str(Path(source.path).parent)
        job = self.session.run(self.session.reader, "Reading the query image",
                               lambda lib, ctx: load_query(lib, source, ctx.cancel, ctx.progress), key="query")  # fmt: skip
        if source.kind == "url":
            self.progress.start(job, f"Downloading {source.name}", job.cancel)
            job.progressed.connect(lambda p, job=job: self.progress.update_progress(job, p))
            job.finished.connect(lambda job=job: self.progress.finish(job))
        job.succeeded.connect(self._on_query_loaded)
        job.failed.connect(self.show_error)

    def _on_query_loaded(self, query: QueryImage) -> None:
        self.query = query
        detail = f"{query.width}×{query.height}"
        if query.source.kind == "indexed":
            detail += " · from the catalog"
        if self.query_text:
            detail += f" + “{self.query_text}”"
        self.query_panel.show_query(query.preview, query.source.name, detail)
        if self.message_bar.kind == "error":
            self.message_bar.dismiss()
        self.queryShown.emit(query)
        self.run_search()

    def _on_text_entered(self) -> None:
        self.query_text = self.search_field.text().strip()
        if self.query is None:
            if self.query_text:
                self.query_panel.show_text_query(self.query_text)
            else:
                self.clear_query()
                return
        else:
            self._on_query_loaded(self.query)
            return
        self.run_search()

    def clear_query(self) -> None:
        self.query = None
        self.query_text = ""
        self.search_field.clear()
        self.query_panel.show_query(None)
        self.results_model.clear()
        self.response = None
        self.summary.clear()
        self.stale_button.setVisible(False)
        self.export_action.setEnabled(False)
        if self.session.is_open:
            snapshot = self.session.snapshot
            self.pages.setCurrentIndex(PAGE_EMPTY if snapshot and snapshot.is_empty and not snapshot.status.folders
                                       else PAGE_READY)  # fmt: skip

    def current_request(self) -> SearchRequest | None:
        terms = self.query.terms(self.query_panel.view.crop) if self.query is not None else []
        if self.query_text:
            terms.append(QueryTerm("text", self.query_text))
        if not terms:
            return None
        return SearchRequest(terms, k=self.filters.k.value(), filters=self.filters.filters())

    def run_search(self) -> Job | None:
        request = self.current_request()
        if request is None or not self.session.is_open:
            return None
        self.ui.save_filters(self.filters)
        job = self.session.search(request)
        self.summary.setText("Searching…")
        job.succeeded.connect(self._on_results)
        job.failed.connect(self._on_search_failed)
        return job

    def _on_results(self, response: SearchResponse) -> None:
        self.response = response
        self._stale = False
        self.stale_button.setVisible(False)
        self.results_model.set_results(response.results)
        self.results_view.scrollToTop()
        self._update_summary()
        self.pages.setCurrentIndex(PAGE_RESULTS if self.results_model.rowCount() else PAGE_NO_RESULTS)
        self.result_actions.update_enabled()
        self.resultsShown.emit(response)

    def _on_search_failed(self, message: str) -> None:
        self.summary.setText("")
        self.show_error(message)

    def _update_summary(self) -> None:
        if self.response is None:
            self.summary.clear()
            return
        text = response_summary(self.response)
        kept = len(self.results_model.kept())
        if kept < self.results_model.total:
            hidden = "hidden" if self.results_model.hide_below else "greyed"
            text += (
                f" · {self.results_model.total - kept:,} below {self.filters.threshold_value:.2f} {hidden}"
            )
        self.summary.setText(text)
        self.export_action.setEnabled(self.session.is_open and kept > 0)

    def _apply_view_options(self) -> None:
        f = self.filters
        self.results_model.set_threshold(f.threshold_value, f.hide_below.isChecked())
        self.results_model.set_sort(f.sort_key, f.descending)
        self.ui.save_view(f)
        self._update_summary()
        if self.response is not None:
            self.pages.setCurrentIndex(PAGE_RESULTS if self.results_model.rowCount() else PAGE_NO_RESULTS)

    def set_icon_size(self, size: int) -> None:
        self.results_view.set_icon_size(size)
        self.thumbnails.set_size(size, self.devicePixelRatioF())
        self.results_view.viewport().update()
        self.ui.icon_size = size

    # --- drops and paste -----------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if self.session.is_open and (mime.hasUrls() or mime.hasImage() or mime.hasText()
                                     or any(f.startswith("image/") for f in mime.formats())):  # fmt: skip
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.handle_mime(event.mimeData(), "dropped"):
            event.acceptProposedAction()
        else:
            event.ignore()

    def paste(self) -> None:
        if not self.handle_mime(QGuiApplication.clipboard().mimeData(), "pasted"):
            self.statusBar().showMessage("The clipboard holds no image, image file or folder", 4000)

    def handle_mime(self, mime, verb: str) -> bool:
        """Folders are added to the catalog; an image (file, data or web address) becomes the query."""
        content = read_mime(mime, verb)
        if content.folders:
            self.add_folders(content.folders)
        if content.query is not None:
            self.search_source(content.query)
        return not content.empty

    def open_image(self) -> None:
        path = self.dialogs.open_image(self, self.ui.last_image_dir)
        if path:
            self.search_file(path)

    # --- folders -------------------------------------------------------------------------

    def add_folder(self) -> None:
        path = self.dialogs.choose_folder(self, self.ui.last_folder_dir)
        if path:
            self.ui.last_folder_dir = str(Path(path).parent)
            self.add_folders([path])

    def add_folders(self, paths: list[str]) -> list[Job]:
        watched = True if self.watch_new_action.isChecked() else None
        return [self._track_indexing(self.session.index([p], watched=watched), Path(p).name) for p in paths]

    def reindex_all(self) -> Job | None:
        if not self.session.is_open:
            return None
        return self._track_indexing(self.session.index(None), "all folders")

    def _track_indexing(self, job: Job, name: str) -> Job:
        self.progress.start(job, f"Indexing {name}", job.cancel)
        job.progressed.connect(lambda p, job=job: self.progress.update_progress(job, p))
        job.finished.connect(lambda job=job: self.progress.finish(job))
        job.succeeded.connect(lambda report: self._on_indexed(report, name))
        job.failed.connect(self.show_error)
        job.cancelled.connect(lambda: self.statusBar().showMessage(f"Stopped indexing {name}", 5000))
        return job

    def _on_indexed(self, report: IndexReport, name: str) -> None:
        added = report.added + report.updated + report.moved + report.reused
        verb = "Stopped indexing" if report.cancelled else "Indexed"
        self.statusBar().showMessage(f"{verb} {name}: {added:,} images added or updated, "
                                     f"{report.removed:,} removed, {len(report.errors):,} skipped "
                                     f"({report.seconds:.1f} s)", 10000)  # fmt: skip
        problems = [f"{Path(p).name}: {reason}" for p, reason in report.folder_errors]
        if report.errors:
            problems.append(f"{len(report.errors):,} file{'s' if len(report.errors) > 1 else ''} could not be read "
                            f"and {'were' if len(report.errors) > 1 else 'was'} skipped. <a href='skipped'>See why</a>")  # fmt: skip
        if problems:
            self.show_message("<br>".join(problems), "warning", rich=True)

    def remove_folder(self, path: str) -> None:
        def answer(choice: str | None) -> None:
            if choice == "Remove":
                job = self.session.remove_folder(path)
                job.succeeded.connect(lambda n: self.statusBar().showMessage(
                    f"Removed {path} and its {n:,} images from the catalog", 6000))  # fmt: skip
                job.failed.connect(self.show_error)

        self.dialogs.ask(self, "Remove folder", f"Remove {path} from the catalog?", ["Remove", "Cancel"], answer,
                         informative="Its images are forgotten by visualfinder; the files on disk are not touched.")  # fmt: skip

    def set_watched(self, path: str, watched: bool) -> None:
        self.session.set_watched(path, watched).failed.connect(self.show_error)

    def show_skipped(self, folder: str = "") -> SkippedFilesDialog | None:
        snapshot = self.session.snapshot
        if snapshot is None:
            return None
        errors = snapshot.status.errors
        dialog = SkippedFilesDialog(errors, folder, len(errors) >= STATUS_ERROR_LIMIT, self)
        dialog.open()
        return dialog

    # --- tags, export, settings ----------------------------------------------------------

    def edit_tags(self, image_ids: list[int], add: list[str], remove: list[str]) -> Job:
        job = self.session.edit_tags(image_ids, add, remove)
        job.succeeded.connect(self.results_model.update_tags)
        job.failed.connect(self.show_error)
        return job

    def export_csv(self) -> Job | None:
        results = self.results_model.kept()
        if not results:
            self.statusBar().showMessage("No results to export", 4000)
            return None
        stem = Path(self.query.source.name).stem if self.query else (self.query_text or "results")
        suggested = str(Path(self.ui.last_export_dir) / f"visualfinder-{_safe_name(stem)}.csv")
        choice = self.dialogs.save_csv(self, suggested)
        if choice is None:
            return None
        dest, excel = choice
        self.ui.last_export_dir = str(Path(dest).parent)
        job = self.session.export_csv(results, dest, excel)
        job.succeeded.connect(lambda path: self.statusBar().showMessage(
            f"Exported {len(results):,} results to {path}", 8000))  # fmt: skip
        job.failed.connect(self.show_error)
        return job

    def open_settings(self) -> SettingsDialog:
        library = self.session.library
        dialog = SettingsDialog(self.session.settings, self.session.background, self.dialogs,
                                library.metric if library else None, self)  # fmt: skip
        dialog.accepted.connect(lambda: self._apply_settings(dialog.chosen))
        self.settings_dialog = dialog
        # The dialog deletes itself when closed: forget it first, never touch a deleted widget.
        dialog.finished.connect(lambda _: setattr(self, "settings_dialog", None))
        dialog.open()
        return dialog

    def _apply_settings(self, chosen) -> None:
        if chosen is None:
            return
        old = self.session.settings
        if chosen == old:
            return
        model_changed = any(getattr(chosen, f) != getattr(old, f) for f in ("model", "pretrained", "device"))
        self._offer_reembed = model_changed
        if chosen.data_dir != old.data_dir:
            self.ui.data_dir = str(chosen.data_dir)
            self.clear_query()
        self.set_library_open(False)
        self.session.open(chosen).failed.connect(lambda message: None)  # openFailed shows it

    def refresh(self) -> None:
        self.session.refresh()
        self.run_search()

    def show_about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("About visualfinder")
        box.setIconPixmap(icons.app_icon().pixmap(64, 64))
        box.setText(f"<b>visualfinder {__version__}</b>")
        box.setInformativeText("Visual product search over your own image catalog: CLIP embeddings (open_clip), "
                               "a USearch HNSW index and SQLite, all on this computer.")  # fmt: skip
        box.finished.connect(box.deleteLater)
        box.open()

    # --- messages and events -------------------------------------------------------------

    def show_error(self, message: str, settings_link: bool = False) -> None:
        if settings_link:
            self.message_bar.show_message(
                f"{html.escape(message)} <a href='settings'>Open Settings</a>", "error", rich=True
            )
        else:
            self.message_bar.show_message(message, "error")
        self.errorShown.emit(message)

    def show_message(self, text: str, kind: str = "info", rich: bool = False) -> None:
        self.message_bar.show_message(text, kind, rich)

    def _on_message_link(self, link: str) -> None:
        if link == "settings":
            self.open_settings()
        elif link == "skipped":
            self.show_skipped()
        elif link == "reindex":
            self.message_bar.dismiss()
            self.reindex_all()

    def _on_library_changed(self, event: LibraryChanged) -> None:
        if event.source == "metadata":
            return  # tag edits are shown in place
        if self.response is not None:
            self._stale = True
            self.stale_button.setVisible(True)
        for task in self.progress.tasks:
            if isinstance(task.key, str) and task.key.startswith("external:"):
                self.progress.finish(task.key)

    def _on_external_progress(self, event: JobProgress) -> None:
        key = f"external:{event.source}"
        progress = event.progress
        if progress.total and progress.done >= progress.total:
            self.progress.finish(key)
        else:
            title = "Updating watched folders" if event.source == "watcher" else event.source.capitalize()
            self.progress.update_progress(key, progress, title)

    def _on_watcher_status(self, event: WatcherStatus) -> None:
        text = {"watching": "Watching folders", "polling": "Watching folders (polling)",
                "stopped": "", "folder-missing": "Watched folder missing", "error": "Watcher stopped"}.get(
            event.state, event.state)  # fmt: skip
        self.watcher_label.setText(text)
        self.watcher_label.setToolTip(event.message)
        self.watcher_label.setVisible(bool(text))
        if event.state == "error" and event.message:
            self.show_message(event.message, "warning")

    def _jobs_named(self, prefix: str) -> list[Job]:
        return [j for j in self.session.writer.jobs() if j.name.startswith(prefix)]

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.refresh_icons()
        super().changeEvent(event)

    def refresh_icons(self) -> None:
        """The palette changed (light <-> dark): re-tint every icon."""
        icons.clear_cache()
        if not hasattr(self, "toolbar"):
            return
        for action in self.actions():
            if action.data():
                action.setIcon(icons.icon(action.data(), self.palette()))
        self.result_actions.refresh_icons()
        for widget in (self.query_panel, self.folders_panel, self.filters, self.progress, self.empty_page,
                       self.ready_page, self.no_results_page, self.opening_page):  # fmt: skip
            widget.refresh_icons()
        self.stale_button.setIcon(icons.icon("refresh", self.palette()))

    # --- closing -------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop running work and close the library on the writer; the window closes when it is done."""
        if self.session.state == "shut":
            self.thumbnails.shutdown()
            self.result_actions.pool.waitForDone(2000)
            event.accept()
            return
        event.ignore()
        if self._closing:
            return
        self._closing = True
        self.ui.save_window(self)
        self.ui.save_view(self.filters)
        self.ui.save_filters(self.filters)
        self.ui.sync()
        if self.settings_dialog is not None:
            self.settings_dialog.close()
        busy = any(q.busy for q in (self.session.writer, self.session.reader))
        self.statusBar().showMessage("Stopping and saving…" if busy else "Closing…")
        self.centralWidget().setEnabled(False)
        self.toolbar.setEnabled(False)
        self.session.shutdown()

    def _on_session_closed(self) -> None:
        self.close()


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


def _nearest_size_index(size: int) -> int:
    return min(range(len(ICON_SIZES)), key=lambda i: abs(ICON_SIZES[i] - size))


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")
    return cleaned[:60] or "results"
