"""The main window: query on the left, results grid on the right, library state in the status bar.

It validates on the GUI thread and hands every library call to the LibrarySession (jobs on
worker threads); results come back as signals. Nothing here blocks on I/O.

The window owns the query and its results. It is composed of parts that receive what they act
on and do not import it back: window_ui (the form), Feedback (progress, messages),
LibraryActions (folders, indexing, settings, the model), ResultActions (what can be done with
results) and Activity (the watcher and sync).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QMainWindow, QMessageBox, QWidget

from visualfinder import __version__
from visualfinder.errors import VisualFinderError
from visualfinder.events import LibraryChanged
from visualfinder.gui import icons, window_ui
from visualfinder.gui.activity import Activity
from visualfinder.gui.dialogs import Desktop, Dialogs
from visualfinder.gui.feedback import Feedback
from visualfinder.gui.library_actions import LibraryActions
from visualfinder.gui.query import QueryImage, QuerySource, file_source, indexed_source, load_query, read_mime
from visualfinder.gui.result_actions import ResultActions
from visualfinder.gui.results_model import ResultsModel
from visualfinder.gui.results_view import ICON_SIZES, ResultsView
from visualfinder.gui.review_actions import ReviewActions
from visualfinder.gui.session import LibrarySession, Snapshot, response_summary
from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.gui.ui_state import UiState
from visualfinder.gui.workers import Job
from visualfinder.search.planner import SearchResult
from visualfinder.search.query_bar import parse_query
from visualfinder.search.request import SearchRequest, SearchResponse

log = logging.getLogger(__name__)

from visualfinder.gui.window_ui import PAGE_EMPTY, PAGE_NO_RESULTS, PAGE_OPENING, PAGE_READY, PAGE_RESULTS  # noqa: E402


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
        self._pending_sources: list[QuerySource] = []
        self._closing = False
        self._restore_filter_choice = True
        self.setWindowTitle("visualfinder")
        self.setWindowIcon(icons.app_icon())
        self.setAcceptDrops(True)

        self.thumbnails = ThumbnailLoader(self.ui.icon_size, self.devicePixelRatioF(), parent=self)
        self.results_model = ResultsModel(self.thumbnails, self)
        self.results_view = ResultsView(self.ui.icon_size, self)
        self.results_view.setModel(self.results_model)
        window_ui.setup(self, self.results_view, self.ui.icon_size, self.ui.watch_new_folders)
        self.feedback = Feedback(self.progress, self.message_bar, self.statusBar(), self)
        self.result_actions = ResultActions(self.results_view, self.results_model, session, self.feedback,
                                            self.dialogs, self.desktop, self.ui, self.find_similar,
                                            self._query_name, self)  # fmt: skip
        self.library_actions = LibraryActions(session, self.dialogs, self.ui, self.feedback, self)
        self.review_actions = ReviewActions(
            session, self.dialogs, self.desktop, self.ui, self.show_matches, self
        )
        # The watcher and other work the window did not start.
        self.activity = Activity(
            session, self.feedback, self.watcher_label, self.sync_label, self.folders_panel, self
        )
        edit_menu = window_ui.build_menus_and_toolbar(
            self, self.result_actions.menu_items, self.activity.action
        )
        edit_menu.aboutToShow.connect(self.result_actions.update_enabled)
        self._connect()
        self.ui.restore_window(self)
        self.ui.restore_filters(self.filters)
        self._apply_view_options()
        self.set_library_open(False)
        self.pages.setCurrentIndex(PAGE_OPENING)

    # --- construction --------------------------------------------------------------------

    def _connect(self) -> None:
        for action, slot in (
            (self.open_image_action, self.open_image),
            (self.paste_action, self.paste),
            (self.add_folder_action, self.library_actions.add_folder),
            (self.export_action, self.result_actions.export_csv),
            (self.duplicates_action, self.review_actions.show_duplicates),
            (self.batch_action, lambda: self.review_actions.match_folder()),
            (self.settings_action, self.library_actions.open_settings),
            (self.import_action, self.library_actions.import_products),
            (self.refresh_action, self.refresh),
            (self.reindex_action, self.library_actions.reindex_all),
            (self.retry_skipped_action, self.library_actions.retry_skipped),
            (self.clear_action, self.clear_query),
            (self.focus_search_action, lambda: self.search_field.setFocus()),
            (self.quit_action, self.close),
            (self.about_action, self.show_about),
            (self.zoom_in_action, lambda: self.zoom.setValue(self.zoom.value() + 1)),
            (self.zoom_out_action, lambda: self.zoom.setValue(self.zoom.value() - 1)),
        ):
            action.triggered.connect(slot)
        self.watch_new_action.toggled.connect(self.ui.set_watch_new_folders)
        self.feedback.errorShown.connect(self.errorShown)
        self.library_actions.reopening.connect(self._on_reopening)
        self.library_actions.modelSwitched.connect(self.run_search)
        self.library_actions.productsImported.connect(lambda _: self.run_search())
        s = self.session
        s.opened.connect(self._on_opened)
        s.openFailed.connect(self._on_open_failed)
        s.snapshotChanged.connect(self._on_snapshot)
        s.libraryChanged.connect(self._on_library_changed)
        s.closed.connect(self._on_session_closed)
        self.query_panel.cropChanged.connect(lambda _: self.run_search())
        self.query_panel.clearRequested.connect(self.clear_query)
        self.query_panel.browseRequested.connect(self.open_image)
        self.filters.searchChanged.connect(self._on_filters_changed)
        self.filters.viewChanged.connect(self._apply_view_options)
        self.folders_panel.addRequested.connect(self.library_actions.add_folder)
        self.folders_panel.removeRequested.connect(self.library_actions.remove_folder)
        self.folders_panel.watchToggled.connect(self.library_actions.set_watched)
        self.folders_panel.errorsRequested.connect(self.library_actions.show_skipped)
        self.empty_page.buttonClicked.connect(self.library_actions.add_folder)
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
                       self.reindex_action, self.duplicates_action, self.batch_action, self.import_action, self.retry_skipped_action):  # fmt: skip
            action.setEnabled(is_open)
        self.export_action.setEnabled(is_open and bool(self.results_model.kept()))
        self.search_field.setEnabled(is_open)
        self.folders_panel.add_button.setEnabled(is_open)

    def _on_opened(self, library) -> None:
        self.set_library_open(True)
        self.filters.set_remote_available(self.session.settings.sync_configured)
        self.library_actions.after_open()
        self._restore_filter_choice = True
        if self.message_bar.kind == "error":
            self.message_bar.dismiss()
        self.pages.setCurrentIndex(PAGE_READY if self.results_model.total == 0 else PAGE_RESULTS)
        self._update_model_label()
        job = self.feedback.track(self.session.load_model(), "Loading the model", cancellable=False)
        job.failed.connect(lambda message: self.show_error(message, settings_link=True))
        for source in self._pending_sources:
            self.search_source(source)
        self._pending_sources.clear()

    def _on_reopening(self, other_library: bool) -> None:
        if other_library:
            self.clear_query()
        self.set_library_open(False)

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
        if self._restore_filter_choice:  # once per opening: later snapshots keep the user's choice
            self._restore_filter_choice = False
            self.ui.restore_filter_choice(self.filters)
        if self.pages.currentIndex() in (PAGE_EMPTY, PAGE_READY, PAGE_OPENING) and self.session.is_open:
            empty = snapshot.is_empty and not status.folders
            self.pages.setCurrentIndex(PAGE_EMPTY if empty else PAGE_READY)
            if not empty:
                self.ready_page.set_text(text=f"Drop a product photo here, paste one with Ctrl+V, or describe what "
                                              f"you are looking for. {stats.ok:,} images are ready to search.")  # fmt: skip
        self.library_actions.check_model(snapshot)

    def _update_model_label(self, snapshot: Snapshot | None = None) -> None:
        """The model the library's vectors come from (the settings may ask for another)."""
        settings = self.session.settings
        library = self.session.library
        if snapshot is not None:
            model, pretrained, device = snapshot.status.model, snapshot.status.pretrained, snapshot.device
        elif library is not None:
            model, pretrained, device = library.model.name, library.model.pretrained, settings.device
        else:
            model, pretrained, device = settings.model, settings.pretrained, settings.device
        weights = pretrained if len(pretrained) <= 24 else Path(pretrained).name
        self.model_label.setText(f"{model} · {device}")
        self.model_label.setToolTip(f"Model {model}, weights {weights}, running on {device}")

    # --- queries -------------------------------------------------------------------------

    def search_file(self, path: str | os.PathLike) -> None:
        self.search_source(file_source(path))

    def show_matches(self, photo: str) -> None:
        """A batch-match row: search with its photo here, and come forward."""
        self.search_file(photo)
        self.raise_()
        self.activateWindow()

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
            self.feedback.track(job, f"Downloading {source.name}")
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
        """The query image (or its region), the search box's words and filters, and the panel's filters.

        The search box speaks the CLI's query bar language: `red chair -leather tag:oak price:<50`."""
        terms = self.query.terms(self.query_panel.view.crop) if self.query is not None else []
        filters = self.filters.filters()
        if self.query_text:
            snapshot = self.session.snapshot
            parsed = parse_query(self.query_text, set(snapshot.fields) if snapshot else set())
            filters = filters.merged(parsed.filters)
            terms += parsed.terms()
        if not any(t.weight > 0 for t in terms):
            return None
        return SearchRequest(
            terms, k=self.filters.k.value(), filters=filters, remote=self.filters.search_remote
        )

    def _on_filters_changed(self) -> None:
        self.ui.save_filters(self.filters)
        self.run_search()

    def run_search(self) -> Job | None:
        if not self.session.is_open:
            return None
        try:
            request = self.current_request()
        except VisualFinderError as exc:  # a query bar typo: `after:someday`
            self.show_error(str(exc))
            return None
        if request is None:
            if self.query_text:
                self.show_error("give something to search for besides filters and minus words: "
                                "an image, or words describing it")  # fmt: skip
            return None
        self.ui.save_filters(self.filters)
        job = self.session.search(request)
        self.summary.setText("Searching…")
        job.succeeded.connect(self._on_results)
        job.failed.connect(self._on_search_failed)
        return job

    def _on_results(self, response: SearchResponse) -> None:
        self.response = response
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
            self.library_actions.add_folders(content.folders)
        if content.query is not None:
            self.search_source(content.query)
        return not content.empty

    def open_image(self) -> None:
        path = self.dialogs.open_image(self, self.ui.last_image_dir)
        if path:
            self.search_file(path)

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
        self.feedback.error(message, settings_link)

    def _query_name(self) -> str:
        return Path(self.query.source.name).stem if self.query else (self.query_text or "results")

    def _on_message_link(self, link: str) -> None:
        if link == "settings":
            self.library_actions.open_settings()
        elif link == "skipped":
            self.library_actions.show_skipped()
        elif link == "switch":
            self.message_bar.dismiss()
            self.library_actions.switch_model()
        elif link == "reindex":
            self.message_bar.dismiss()
            self.library_actions.reindex_all()

    def _on_library_changed(self, event: LibraryChanged) -> None:
        if event.source == "metadata":
            return  # tag edits are shown in place
        if self.response is not None:
            self.stale_button.setVisible(True)

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
        self.search_icon.setIcon(icons.icon("search", self.palette()))

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
        if self.library_actions.settings_dialog is not None:
            self.library_actions.settings_dialog.close()
        self.review_actions.close_all()
        busy = any(q.busy for q in (self.session.writer, self.session.reader))
        self.statusBar().showMessage("Stopping and saving…" if busy else "Closing…")
        self.centralWidget().setEnabled(False)
        self.toolbar.setEnabled(False)
        self.session.shutdown()

    def _on_session_closed(self) -> None:
        self.close()
