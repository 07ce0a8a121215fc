"""The duplicates window: groups on the left (paged), the chosen group's copies side by side.

Finding runs as a job on the session's review queue with progress and Stop in this window's
status bar; the groups are listed as the job finds them (identical files first, within a moment;
the first group can be resolved while the rest are still being found), and a new threshold
(the slider) finds again and supersedes the run in flight. For each
group the user keeps one copy (the core's suggestion is preselected) and moves the others to
the system trash after a confirmation with counts, or keeps all, which the library remembers
as the CLI's `duplicates --keep-both` does (or `--distinct`: "not duplicates"). Resolved groups
leave the list; they stay resolved when the library is searched again.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QMouseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QMainWindow,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from visualfinder.catalog.records import ImageRecord
from visualfinder.gui.dialogs import Desktop, Dialogs
from visualfinder.gui.duplicates_model import TIER_NAMES, DuplicateGroupsModel, human_bytes
from visualfinder.gui.feedback import Feedback
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.status_widgets import MessageBar, ProgressPanel
from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.gui.workers import Job
from visualfinder.library.duplicates import TrashReport
from visualfinder.search.duplicates import DuplicateGroup, DuplicateReport

CARD_THUMB = 200
LIST_THUMB = 56
SLIDER_MIN = 80  # similarity x 100: the slider spans 0.80 .. 1.00


class CopyCard(QFrame):
    """One copy of a group: thumbnail, facts, product data, and the Keep choice."""

    chosen = Signal()
    openRequested = Signal(str)

    def __init__(
        self, record: ImageRecord, similarity: float, suggested: bool, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.record = record
        self.setObjectName("copyCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFixedWidth(CARD_THUMB + 24)
        self.thumb = QLabel(self)
        self.thumb.setFixedSize(CARD_THUMB, CARD_THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setToolTip("Double-click to open")
        self.keep = QRadioButton("Keep this copy" + (" (suggested)" if suggested else ""), self)
        self.keep.setObjectName("keepChoice")
        self.facts = QLabel(self)
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts.setText(card_text(record, similarity))
        self.facts.setToolTip(record.path)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.addWidget(self.thumb, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.keep)
        layout.addWidget(self.facts)
        layout.addStretch(1)

    def set_pixmap(self, pixmap) -> None:
        self.thumb.setPixmap(pixmap)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.keep.setChecked(True)
        self.chosen.emit()
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.openRequested.emit(self.record.path)


def card_text(record: ImageRecord, similarity: float) -> str:
    """Size, resolution, format, date, path and product data of one copy, as rich text."""
    resolution = f"{record.width}×{record.height}" if record.width else "unknown size"
    date = dt.datetime.fromtimestamp(record.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    path = Path(record.path)
    lines = [
        f"<b>{html.escape(resolution)}</b> · {html.escape(record.format or '?')} · {human_bytes(record.size)}",
        f"modified {date}",
        html.escape(_elide_middle(path.name, 34)),
        f"<span style='color: gray'>in {html.escape(_elide_middle(str(path.parent), 34))}</span>",
    ]
    product = [v for v in (record.sku, record.title) if v]
    if record.price is not None:
        product.append(f"{record.price:g}")
    if product:
        lines.append("product: " + html.escape(" · ".join(product)))
    if record.tags:
        lines.append("tags: " + html.escape(", ".join(record.tags)))
    if similarity < 1.0:
        lines.append(f"similarity {similarity:.3f}")
    return "<br>".join(lines)


def _elide_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return text[:half] + "…" + text[-half:]


class DuplicatesWindow(QMainWindow):
    """Find duplicate groups and resolve them one by one."""

    groupsShown = Signal(object)  # DuplicateReport: the search is complete, the list holds its groups
    groupsArrived = Signal(object)  # list[DuplicateGroup]: groups the running search just found
    groupResolved = Signal(object)  # DuplicateGroup

    def __init__(self, session: LibrarySession, dialogs: Dialogs, desktop: Desktop, export_dir: str = "",
                 parent: QWidget | None = None):  # fmt: skip
        super().__init__(parent, Qt.WindowType.Window)
        self.session = session
        self.dialogs = dialogs
        self.desktop = desktop
        self.export_dir = export_dir
        self.report: DuplicateReport | None = None
        self.job: Job | None = None
        self._listing: Job | None = None  # the search whose groups the list holds, while it runs
        self.cards: list[CopyCard] = []
        self.current: DuplicateGroup | None = None
        self.setWindowTitle("Duplicates — visualfinder")
        self.resize(1100, 720)
        self.thumbnails = ThumbnailLoader(CARD_THUMB, self.devicePixelRatioF(), parent=self)
        self.list_thumbnails = ThumbnailLoader(LIST_THUMB, self.devicePixelRatioF(), parent=self)
        self.model = DuplicateGroupsModel(self.list_thumbnails, self)
        self._build()
        self.feedback = Feedback(self.progress, self.message_bar, self.statusBar(), self)
        self._find_timer = QTimer(self, singleShot=True, interval=350)
        self._find_timer.timeout.connect(self.find)
        self._connect()
        threshold = round(session.settings.duplicate_threshold * 100)
        self.slider.setMinimum(min(SLIDER_MIN, threshold))  # a lower configured threshold stays reachable
        self.slider.setValue(threshold)
        self._update_threshold_label()
        self._show_group(None)

    # --- construction --------------------------------------------------------------------

    def _build(self) -> None:
        self.tier_box = QComboBox(self)
        self.tier_box.setAccessibleName("Tier")
        for tier in (None, *TIER_NAMES):
            self.tier_box.addItem("All tiers" if tier is None else TIER_NAMES[tier], tier)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(SLIDER_MIN, 100)
        self.slider.setFixedWidth(180)
        self.slider.setAccessibleName("Similarity threshold")
        self.slider.setToolTip("How alike two pictures must be to be listed as similar (tier 3)")
        self.threshold_label = QLabel(self)
        self.find_button = QPushButton("Find again", self)
        self.export_button = QPushButton("Export CSV…", self)
        self.export_button.setEnabled(False)
        top = QHBoxLayout()
        top.setContentsMargins(8, 8, 8, 0)
        top.addWidget(QLabel("Show", self))
        top.addWidget(self.tier_box)
        top.addSpacing(16)
        top.addWidget(QLabel("Similar above", self))
        top.addWidget(self.slider)
        top.addWidget(self.threshold_label)
        top.addStretch(1)
        top.addWidget(self.find_button)
        top.addWidget(self.export_button)

        self.list = QListView(self)
        self.list.setModel(self.model)
        self.list.setIconSize(QSize(LIST_THUMB, LIST_THUMB))
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setMinimumWidth(240)
        self.list.setAccessibleName("Duplicate groups")

        self.group_title = QLabel(self)
        font = self.group_title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.group_title.setFont(font)
        self.group_hint = QLabel(self)
        self.group_hint.setWordWrap(True)
        self.cards_host = QWidget(self)
        self.cards_layout = QHBoxLayout(self.cards_host)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        self.cards_layout.setSpacing(10)
        self.cards_layout.addStretch(1)
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.cards_host)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.keep_group = QButtonGroup(self)
        self.trash_button = QPushButton("Keep the chosen copy, move the others to the trash…", self)
        self.trash_button.setDefault(True)
        self.keep_all_button = QPushButton("Keep all", self)
        self.keep_all_button.setToolTip("Keep every copy; this group is not shown again")
        self.distinct_button = QPushButton("Not duplicates", self)
        self.distinct_button.setToolTip("These are different pictures; they are not grouped again")
        actions = QHBoxLayout()
        actions.addWidget(self.trash_button)
        actions.addWidget(self.keep_all_button)
        actions.addWidget(self.distinct_button)
        actions.addStretch(1)
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(8, 0, 8, 8)
        column.addWidget(self.group_title)
        column.addWidget(self.group_hint)
        column.addWidget(self.scroll, 1)
        column.addLayout(actions)

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.list)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([280, 820])
        splitter.setChildrenCollapsible(False)
        self.message_bar = MessageBar(self)
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.message_bar)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(body)
        self.progress = ProgressPanel(self)
        self.statusBar().addPermanentWidget(self.progress)
        self.count_label = QLabel(self)
        self.statusBar().addPermanentWidget(self.count_label)

    def _connect(self) -> None:
        self.tier_box.currentIndexChanged.connect(lambda _: self._on_tier_changed())
        self.slider.valueChanged.connect(lambda _: self._update_threshold_label())
        self.slider.valueChanged.connect(lambda _: self._find_timer.start())
        self.find_button.clicked.connect(self.find)
        self.export_button.clicked.connect(self.export_csv)
        self.list.selectionModel().currentChanged.connect(
            lambda current, _: self._show_group(self.model.group(current.row()))
        )
        self.model.modelReset.connect(self._select_first)
        self.trash_button.clicked.connect(self.trash_others)
        self.keep_all_button.clicked.connect(lambda: self.keep_all("keep_both"))
        self.distinct_button.clicked.connect(lambda: self.keep_all("distinct"))
        self.thumbnails.ready.connect(self._on_card_thumbnail)

    # --- finding -------------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        return self.slider.value() / 100

    def _update_threshold_label(self) -> None:
        self.threshold_label.setText(f"{self.threshold:.2f}")

    def find(self) -> Job:
        """Find the groups (again) at the slider's threshold; supersedes a run in flight."""
        self._find_timer.stop()
        job = self.session.find_duplicates(self.threshold)
        self.job = job
        self.feedback.track(job, "Finding duplicates")
        self.find_button.setEnabled(False)
        job.partial.connect(lambda groups, job=job: self._on_groups(job, groups))
        job.succeeded.connect(lambda report, job=job: self._on_found(job, report))
        job.failed.connect(self.feedback.error)
        job.cancelled.connect(lambda job=job: self._on_stopped(job))
        job.finished.connect(lambda job=job: self._on_finished(job))
        return job

    def _on_finished(self, job: Job) -> None:
        if job is self.job:
            self.find_button.setEnabled(True)

    def _on_stopped(self, job: Job) -> None:
        if job is not self.job:
            return
        if self._listing is job:
            self._listing = None
            self.feedback.note(f"Stopped: the list shows the {self.model.counts()[None]:,} groups found before Stop; "
                               "Find again for the rest")  # fmt: skip
        else:
            self.feedback.note("Stopped: the list shows the groups of the last complete search")

    def _on_groups(self, job: Job, groups: list[DuplicateGroup]) -> None:
        """Groups the running search found: the first ones replace the last search's list."""
        if job is not self.job:
            return
        if self._listing is not job:
            self._listing = job
            self.message_bar.dismiss()
            self.model.set_groups(groups)  # a reset: selects the first group
        else:
            empty = self.model.rowCount() == 0
            self.model.add_groups(groups)
            if empty:
                self._select_first()
        self._update_counts()
        self.groupsArrived.emit(groups)

    def _on_found(self, job: Job, report: DuplicateReport) -> None:
        self.report = report
        if self._listing is job:  # every group is listed already (less those resolved meanwhile)
            self._listing = None
        else:
            self.message_bar.dismiss()
            self.model.set_groups(report.groups)
        self._update_counts()
        if self.current is None:
            self._show_group(None)
        self.feedback.note(
            f"{len(report.groups):,} groups among {report.images:,} images in {report.seconds:.1f} s"
        )
        self.groupsShown.emit(report)

    def _on_tier_changed(self) -> None:
        self.model.set_tier(self.tier_box.currentData())
        self._update_counts()

    def _update_counts(self) -> None:
        counts = self.model.counts()
        for i in range(self.tier_box.count()):
            tier = self.tier_box.itemData(i)
            name = "All tiers" if tier is None else TIER_NAMES[tier]
            self.tier_box.setItemText(i, f"{name} ({counts[tier]:,})")
        total = self.model.total
        self.count_label.setText(f"{total:,} group{'s' if total != 1 else ''}")
        self.export_button.setEnabled(total > 0)
        self._update_title()

    def _select_first(self) -> None:
        if self.model.rowCount():
            self.list.setCurrentIndex(self.model.index(0))
        else:
            self._show_group(None)

    # --- one group -----------------------------------------------------------------------

    def _show_group(self, group: DuplicateGroup | None) -> None:
        self.current = group
        for card in self.cards:
            self.keep_group.removeButton(card.keep)
            self.cards_layout.removeWidget(card)
            card.hide()  # gone now; deleted when the event loop next runs
            card.deleteLater()
        self.cards = []
        for button in (self.trash_button, self.keep_all_button, self.distinct_button):
            button.setEnabled(group is not None)
        if group is None:
            done = self.report is not None
            self.group_title.setText("No duplicates left" if done else "Looking for duplicates…")
            self.group_hint.setText("Every group is resolved." if done and self.report.groups else "")
            return
        self._update_title()
        self.group_hint.setText("Choose the copy to keep. The suggestion has the highest resolution, then the "
                                "original format, then product data, then the oldest date.")  # fmt: skip
        suggested = group.suggested
        for position, (record, score) in enumerate(zip(group.members, group.similarity, strict=True)):
            card = CopyCard(record, score, position == suggested, self.cards_host)
            self.keep_group.addButton(card.keep, position)
            card.keep.setChecked(position == suggested)
            card.keep.toggled.connect(lambda _: self._update_trash_label())
            card.openRequested.connect(self.desktop.open_file)
            pixmap = self.thumbnails.pixmap(record.path, [record.thumb_path or "", record.path])
            if pixmap is not None:
                card.set_pixmap(pixmap)
            self.cards_layout.insertWidget(self.cards_layout.count() - 1, card, 0, Qt.AlignmentFlag.AlignTop)
            self.cards.append(card)
        self._update_trash_label()

    def _update_title(self) -> None:
        group = self.current
        if group is not None:
            row = self.list.currentIndex().row()
            self.group_title.setText(f"{TIER_NAMES[group.tier]} — {len(group.members)} copies "
                                     f"(group {row + 1:,} of {self.model.total:,})")  # fmt: skip

    def _on_card_thumbnail(self, key: str) -> None:
        for card in self.cards:
            if card.record.path == key:
                pixmap = self.thumbnails.pixmap(key, [])
                if pixmap is not None:
                    card.set_pixmap(pixmap)

    def chosen(self) -> int:
        """The position of the copy to keep in the current group."""
        return self.keep_group.checkedId()

    def choose(self, position: int) -> None:
        self.cards[position].keep.setChecked(True)

    def _update_trash_label(self) -> None:
        others = len(self.cards) - 1
        self.trash_button.setText(f"Keep the chosen copy, move {others} other{'s' if others != 1 else ''} "
                                  f"to the trash…")  # fmt: skip

    # --- resolving -----------------------------------------------------------------------

    def trash_others(self) -> None:
        group = self.current
        if group is None or self.chosen() < 0:
            return
        keep = group.members[self.chosen()]
        others = [r for i, r in enumerate(group.members) if i != self.chosen()]
        size = human_bytes(sum(r.size for r in others))
        count = f"{len(others)} file{'s' if len(others) != 1 else ''}"

        def answered(answer: str | None) -> None:
            if answer != "Move to Trash":
                return
            job = self.session.keep_one(keep.path, [r.path for r in others], self.desktop.move_to_trash)
            self.feedback.track(job, f"Moving {count} to the trash", cancellable=False)
            job.succeeded.connect(lambda report: self._on_trashed(group, report))
            job.failed.connect(self.feedback.error)

        self.dialogs.ask(
            self, "Move to the trash", f"Move {count} ({size}) to the trash and keep {Path(keep.path).name}?",
            ["Move to Trash", "Cancel"], answered,
            informative="They can be restored from the system trash; the catalog forgets them.",
        )  # fmt: skip

    def _on_trashed(self, group: DuplicateGroup, report: TrashReport) -> None:
        if report.failed:
            names = ", ".join(Path(p).name for p, _ in report.failed[:3])
            self.feedback.error(f"{len(report.failed)} file(s) could not be moved to the trash and were left in "
                                f"place: {names} ({report.failed[0][1]})")  # fmt: skip
        if report.moved:
            self.feedback.note(
                f"Moved {len(report.moved)} file(s) to the trash; kept {Path(report.kept).name}"
            )
        if not report.failed:
            self._resolved(group)

    def keep_all(self, decision: str = "keep_both") -> None:
        """Keep every copy of the group and remember it (`keep_both`), or that they differ (`distinct`)."""
        group = self.current
        if group is None:
            return
        job = self.session.keep_duplicates([r.path for r in group.members], decision)
        job.succeeded.connect(lambda _: self._resolved(group))
        job.failed.connect(self.feedback.error)

    def _resolved(self, group: DuplicateGroup) -> None:
        row = self.model.remove(group)
        self._update_counts()
        self.groupResolved.emit(group)
        if self.model.rowCount() == 0 and self.model.canFetchMore():
            self.model.fetchMore()
        if self.model.rowCount():
            self.list.setCurrentIndex(self.model.index(min(max(row, 0), self.model.rowCount() - 1)))
        else:
            self._show_group(None)

    # --- export --------------------------------------------------------------------------

    def export_csv(self) -> None:
        groups = self.model.groups()
        if not groups:
            return
        suggested = str(Path(self.export_dir or str(Path.home())) / "duplicates.csv")
        chosen = self.dialogs.save_csv(self, suggested)
        if chosen is None:
            return
        path, excel = chosen
        job = self.session.export_duplicates_csv(groups, path, excel)
        job.succeeded.connect(lambda dest: self.feedback.note(f"Exported {len(groups):,} groups to {dest}"))
        job.failed.connect(self.feedback.error)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()
        self._find_timer.stop()
        self.thumbnails.shutdown()
        self.list_thumbnails.shutdown()
        super().closeEvent(event)
