"""The batch-match window: every photo of a folder with its best catalog match and score.

Matching runs on the session's review queue with progress and Stop in this window's status
bar. Activating a row shows that photo's matches grid in the main window (through the
`show_matches` callback, which searches with the photo there); Export CSV writes every match of
every photo (photo, rank, sku, title, score, path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from visualfinder.gui.batch_model import COL_MATCH, COL_OTHERS, COL_PHOTO, COL_SCORE, BatchMatchModel
from visualfinder.gui.dialogs import Dialogs
from visualfinder.gui.feedback import Feedback
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.status_widgets import MessageBar, ProgressPanel
from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.gui.workers import Job
from visualfinder.library.batch import BatchReport

ROW_THUMB = 48


class BatchMatchWindow(QMainWindow):
    matched = Signal(object)  # BatchReport

    def __init__(self, session: LibrarySession, dialogs: Dialogs, folder: str,
                 show_matches: Callable[[str], None], export_dir: str = "", k: int = 5,
                 parent: QWidget | None = None):  # fmt: skip
        super().__init__(parent, Qt.WindowType.Window)
        self.session = session
        self.dialogs = dialogs
        self.folder = folder
        self.show_matches = show_matches
        self.export_dir = export_dir
        self.report: BatchReport | None = None
        self.job: Job | None = None
        self.setWindowTitle(f"Match {Path(folder).name} — visualfinder")
        self.resize(980, 640)
        self.thumbnails = ThumbnailLoader(ROW_THUMB, self.devicePixelRatioF(), parent=self)
        self.model = BatchMatchModel(self.thumbnails, self)

        self.folder_label = QLabel(f"Photos in <b>{folder}</b>", self)
        self.k = QSpinBox(self)
        self.k.setRange(1, 100)
        self.k.setValue(k)
        self.k.setPrefix("top ")
        self.k.setAccessibleName("Matches per photo")
        self.match_button = QPushButton("Match again", self)
        self.show_button = QPushButton("Show matches", self)
        self.show_button.setToolTip("Search with this photo in the main window")
        self.export_button = QPushButton("Export CSV…", self)
        self.export_button.setEnabled(False)
        self.show_button.setEnabled(False)
        top = QHBoxLayout()
        top.setContentsMargins(8, 8, 8, 0)
        top.addWidget(self.folder_label, 1)
        top.addWidget(self.k)
        top.addWidget(self.match_button)
        top.addWidget(self.show_button)
        top.addWidget(self.export_button)

        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setIconSize(QSize(ROW_THUMB, ROW_THUMB))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(ROW_THUMB + 8)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COL_PHOTO, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COL_MATCH, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_SCORE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_OTHERS, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(COL_PHOTO, 260)
        self.table.setColumnWidth(COL_OTHERS, 220)
        self.table.setAccessibleName("Batch match results")

        self.message_bar = MessageBar(self)
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.table, 1)
        self.setCentralWidget(body)
        self.progress = ProgressPanel(self)
        self.statusBar().addPermanentWidget(self.progress)
        self.feedback = Feedback(self.progress, self.message_bar, self.statusBar(), self)

        self.match_button.clicked.connect(self.match)
        self.show_button.clicked.connect(self.show_current)
        self.export_button.clicked.connect(self.export_csv)
        self.table.activated.connect(lambda index: self.show_row(index.row()))
        self.table.selectionModel().currentRowChanged.connect(
            lambda current, _: self.show_button.setEnabled(self._has_matches(current.row()))
        )

    def match(self) -> Job:
        job = self.session.match_folder(self.folder, self.k.value())
        self.job = job
        self.feedback.track(job, f"Matching the photos of {Path(self.folder).name}")
        self.match_button.setEnabled(False)
        job.succeeded.connect(self._on_matched)
        job.failed.connect(self.feedback.error)
        job.cancelled.connect(lambda: self.feedback.note("Stopped"))
        job.finished.connect(lambda: self.match_button.setEnabled(True))
        return job

    def _on_matched(self, report: BatchReport) -> None:
        self.report = report
        self.model.set_matches(report.matches)
        self.export_button.setEnabled(bool(report.matches))
        failed = len(report.failed)
        text = f"{len(report.matches):,} photos matched against the catalog"
        if failed:
            text += f"; {failed:,} could not be read"
        if not report.matches:
            self.feedback.message(f"No photos in {report.folder}", "info")
        self.feedback.note(text, 0)
        if report.matches:
            self.table.selectRow(0)
            self.table.setFocus()
        self.matched.emit(report)

    def _has_matches(self, row: int) -> bool:
        match = self.model.photo(row)
        return match is not None and bool(match.results)

    def show_row(self, row: int) -> bool:
        """Show this photo's matches grid in the main window (a search with the photo there)."""
        match = self.model.photo(row)
        if match is None or not match.results:
            return False
        self.show_matches(match.photo)
        return True

    def show_current(self) -> None:
        self.show_row(self.table.currentIndex().row())

    def export_csv(self) -> None:
        matches = self.model.matches()
        if not matches:
            return
        suggested = str(Path(self.export_dir or str(Path.home())) / f"{Path(self.folder).name}-matches.csv")
        chosen = self.dialogs.save_csv(self, suggested)
        if chosen is None:
            return
        path, excel = chosen
        job = self.session.export_batch_csv(matches, path, excel)
        job.succeeded.connect(
            lambda dest: self.feedback.note(f"Exported the matches of {len(matches):,} photos to {dest}")
        )
        job.failed.connect(self.feedback.error)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()
        self.thumbnails.shutdown()
        super().closeEvent(event)
