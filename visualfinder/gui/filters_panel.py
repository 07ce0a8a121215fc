"""Filters beside the grid: what to search (folder, tag, how many) and how to show it
(similarity threshold, sort). The first kind re-runs the search; the second only re-orders."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QToolButton,
    QWidget,
)

from visualfinder.catalog.filters import Filters
from visualfinder.catalog.store import Folder
from visualfinder.gui import icons
from visualfinder.gui.results_model import SORT_KEYS

MAX_K = 10_000
DEFAULT_K = 50


class FiltersPanel(QWidget):
    searchChanged = Signal()  # folder, tag or k: the search must run again
    viewChanged = Signal()  # threshold, hide, sort: re-order what we have

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder = QComboBox(self)
        self.folder.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.folder.setMinimumContentsLength(12)
        self.folder.setAccessibleName("Folder filter")
        self.tag = QComboBox(self)
        self.tag.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.tag.setMinimumContentsLength(12)
        self.tag.setAccessibleName("Tag filter")
        self.k = QSpinBox(self)
        self.k.setRange(1, MAX_K)
        self.k.setValue(DEFAULT_K)
        self.k.setAccelerated(True)
        self.k.setToolTip("How many of the most similar images to find")
        self.k.setAccessibleName("Number of results")
        self.threshold = QSlider(Qt.Orientation.Horizontal, self)
        self.threshold.setRange(0, 100)
        self.threshold.setPageStep(5)
        self.threshold.setToolTip("Results below this similarity are greyed out (or hidden)")
        self.threshold.setAccessibleName("Minimum similarity")
        self.threshold_label = QLabel(self)
        self.threshold_label.setMinimumWidth(34)
        self.threshold_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.hide_below = QCheckBox("Hide results below it", self)
        self.sort = QComboBox(self)
        for key, label, _ in SORT_KEYS:
            self.sort.addItem(label, key)
        self.sort.setAccessibleName("Sort results by")
        self.order = QToolButton(self)
        self.order.setCheckable(True)
        self.order.setAutoRaise(True)
        self.order.setAccessibleName("Sort order")
        self.order.setChecked(True)  # similarity, best first
        self.remote = QCheckBox("Search the OpenSearch cluster", self)
        self.remote.setToolTip("Answer searches from the OpenSearch index this library syncs to "
                               "(as `visualfinder search --remote`)")  # fmt: skip
        self.remote.setVisible(False)  # shown once a cluster is configured

        threshold_row = QHBoxLayout()
        threshold_row.setContentsMargins(0, 0, 0, 0)
        threshold_row.addWidget(self.threshold, 1)
        threshold_row.addWidget(self.threshold_label)
        sort_row = QHBoxLayout()
        sort_row.setContentsMargins(0, 0, 0, 0)
        sort_row.addWidget(self.sort, 1)
        sort_row.addWidget(self.order)

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.addRow("Folder", self.folder)
        form.addRow("Tag", self.tag)
        form.addRow("Results", self.k)
        form.addRow("Similarity ≥", threshold_row)
        form.addRow("", self.hide_below)
        form.addRow("Sort by", sort_row)
        form.addRow("", self.remote)

        self.set_folders([])
        self.set_tags([])
        # k is typed digit by digit: search once the user pauses, not per keystroke.
        self._k_timer = QTimer(self, singleShot=True, interval=400)
        self._k_timer.timeout.connect(self.searchChanged)
        self.folder.activated.connect(lambda _: self.searchChanged.emit())
        self.tag.activated.connect(lambda _: self.searchChanged.emit())
        self.k.valueChanged.connect(lambda _: self._k_timer.start())
        self.remote.toggled.connect(lambda _: self.searchChanged.emit())
        self.threshold.valueChanged.connect(self._on_threshold)
        self.hide_below.toggled.connect(lambda _: self.viewChanged.emit())
        self.sort.activated.connect(self._on_sort_key)
        self.order.toggled.connect(self._on_order)
        self._on_threshold(self.threshold.value())
        self._on_order(self.order.isChecked(), emit=False)

    # --- what to search ------------------------------------------------------------------

    def set_folders(self, folders: list[Folder]) -> None:
        current = self.folder.currentData()
        self.folder.clear()
        self.folder.addItem("All folders", None)
        for folder in folders:
            self.folder.addItem(icons.icon("folder", self.palette()), _short(folder.path), folder.path)
            self.folder.setItemData(self.folder.count() - 1, folder.path, Qt.ItemDataRole.ToolTipRole)
        index = self.folder.findData(current) if current else 0
        self.folder.setCurrentIndex(max(0, index))

    def set_tags(self, tags: list[tuple[str, int]]) -> None:
        current = self.tag.currentData()
        self.tag.clear()
        self.tag.addItem("Any tag", None)
        for tag, count in tags:
            self.tag.addItem(f"{tag}  ({count:,})", tag)
        index = self.tag.findData(current) if current else 0
        self.tag.setCurrentIndex(max(0, index))
        self.tag.setEnabled(bool(tags))

    def filters(self) -> Filters:
        folder = self.folder.currentData()
        tag = self.tag.currentData()
        return Filters(folders=[folder] if folder else [], tags_all=[tag] if tag else [])

    def set_remote_available(self, available: bool) -> None:
        """Offer searching the cluster only when one is configured (unticked when it goes away)."""
        self.remote.setVisible(available)
        if not available and self.remote.isChecked():
            self.remote.setChecked(False)

    @property
    def search_remote(self) -> bool:
        return self.remote.isChecked() and not self.remote.isHidden()

    def select_folder(self, path: str | None) -> None:
        self.folder.setCurrentIndex(max(0, self.folder.findData(path)) if path else 0)

    def select_tag(self, tag: str | None) -> None:
        self.tag.setCurrentIndex(max(0, self.tag.findData(tag)) if tag else 0)

    # --- how to show it ------------------------------------------------------------------

    @property
    def threshold_value(self) -> float:
        return self.threshold.value() / 100

    def set_threshold(self, value: float) -> None:
        self.threshold.setValue(round(value * 100))

    @property
    def sort_key(self) -> str:
        return self.sort.currentData()

    @property
    def descending(self) -> bool:
        return self.order.isChecked()

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        self.sort.setCurrentIndex(max(0, self.sort.findData(key)))
        self.order.setChecked(_default_descending(key) if descending is None else descending)
        self.viewChanged.emit()

    def _on_threshold(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self.viewChanged.emit()

    def _on_sort_key(self, _index: int) -> None:
        # Each key starts in its natural order: best match, A-Z, newest, cheapest.
        self.order.blockSignals(True)
        self.order.setChecked(_default_descending(self.sort_key))
        self.order.blockSignals(False)
        self._on_order(self.order.isChecked())

    def _on_order(self, descending: bool, emit: bool = True) -> None:
        self.order.setIcon(icons.icon("sort-descending" if descending else "sort-ascending", self.palette()))
        self.order.setToolTip(
            "Descending (click for ascending)" if descending else "Ascending (click for descending)"
        )
        if emit:
            self.viewChanged.emit()

    def refresh_icons(self) -> None:
        self._on_order(self.order.isChecked(), emit=False)


def _default_descending(key: str) -> bool:
    return next(desc for k, _, desc in SORT_KEYS if k == key)


def _short(path: str) -> str:
    p = Path(path)
    return f"{p.name}  —  {p.parent}" if p.name else path
