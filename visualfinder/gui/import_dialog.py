"""File › Import product data…: a CSV, JSON or JSON Lines sheet, previewed, mapped column by column,
checked (a dry run), imported, and its report of matched and unmatched rows saved as CSV.

The importer is the CLI's (`import-metadata`): the dialog builds a `products.fields.ColumnMapping`
and the session runs `library.products.import_metadata` as a job with progress and Stop.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from visualfinder.errors import VisualFinderError
from visualfinder.gui import icons
from visualfinder.gui.dialogs import SHEET_FILTER, Dialogs
from visualfinder.gui.feedback import Feedback
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.workers import Job
from visualfinder.products.fields import IMAGE_ROLE, ColumnMapping, SheetPreview
from visualfinder.products.importer import ImportReport

ROLE_LABELS = {
    "image": "Image (path or file name)", "sku": "SKU", "title": "Title", "description": "Description",
    "tags": "Tags", "url": "URL", "price": "Price", "extra": "Extra field", "skip": "Skip",
}  # fmt: skip
MATCH_LABELS = {
    "path": "Image path (relative to the sheet or a catalog folder)",
    "name": "File name only",
    "sku": "SKU column = file name without extension",
}
REPORT_ROWS_SHOWN = 2000  # the table shows the first ones; the saved CSV has them all
COL_NAME, COL_ROLE, COL_EXAMPLE = range(3)


class ImportDialog(QDialog):
    """Preview, map, check and import one product sheet. `imported` carries the final report."""

    previewShown = Signal(object)  # SheetPreview
    reportShown = Signal(object)  # ImportReport (a check or an import)
    imported = Signal(object)  # ImportReport of an import that wrote

    def __init__(self, session: LibrarySession, feedback: Feedback, dialogs: Dialogs, start_dir: str,
                 parent: QWidget | None = None):  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Import product data")
        self.setWindowIcon(icons.app_icon())
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(880, 680)
        self.session = session
        self.feedback = feedback
        self.dialogs = dialogs
        self.start_dir = start_dir
        self.preview: SheetPreview | None = None
        self.report: ImportReport | None = None
        self._job: Job | None = None

        self.path = QLineEdit(self)
        self.path.setPlaceholderText("A CSV, JSON or JSON Lines file of products")
        self.path.setAccessibleName("Product sheet")
        self.browse = QToolButton(self)
        self.browse.setText("Choose…")
        self.sheet_info = QLabel(self)
        self.sheet_info.setEnabled(False)

        self.preview_table = QTableWidget(self)
        self.preview_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.preview_table.setAccessibleName("First rows of the sheet")
        self.preview_table.verticalHeader().setVisible(False)

        self.mapping_table = QTableWidget(0, 3, self)
        self.mapping_table.setHorizontalHeaderLabels(["Column", "Import as", "Example"])
        self.mapping_table.verticalHeader().setVisible(False)
        self.mapping_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.mapping_table.horizontalHeader().setSectionResizeMode(
            COL_EXAMPLE, QHeaderView.ResizeMode.Stretch
        )
        self.mapping_table.setAccessibleName("Column mapping")
        self.match_by = QComboBox(self)
        for mode, label in MATCH_LABELS.items():
            self.match_by.addItem(label, mode)
        self.match_by.setAccessibleName("Match rows to images by")
        self.replace_tags = QCheckBox("Replace each image's tags (instead of adding to them)", self)

        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report_table = QTableWidget(0, 4, self)
        self.report_table.setHorizontalHeaderLabels(["Line", "Result", "Image reference", "Images / detail"])
        self.report_table.verticalHeader().setVisible(False)
        self.report_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.report_table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.report_table.setAccessibleName("Import report")

        self.check_button = QPushButton("Check matches", self)
        self.check_button.setToolTip("Match the rows to images without changing anything")
        self.import_button = QPushButton("Import", self)
        self.import_button.setDefault(True)
        self.save_report_button = QPushButton("Save report…", self)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.buttons.addButton(self.check_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.save_report_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.import_button, QDialogButtonBox.ButtonRole.AcceptRole)

        file_row = QHBoxLayout()
        file_row.addWidget(self.path, 1)
        file_row.addWidget(self.browse)
        options = QFormLayout()
        options.addRow("Match rows to images by", self.match_by)
        options.addRow("", self.replace_tags)
        mapping_box = QWidget(self)
        mapping_layout = QVBoxLayout(mapping_box)
        mapping_layout.setContentsMargins(0, 0, 0, 0)
        mapping_layout.addWidget(_title("Columns"))
        mapping_layout.addWidget(self.mapping_table, 1)
        mapping_layout.addLayout(options)
        preview_box = QWidget(self)
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        preview_layout.addWidget(_title("Preview"))
        preview_layout.addWidget(self.preview_table, 1)
        report_box = QWidget(self)
        report_layout = QVBoxLayout(report_box)
        report_layout.setContentsMargins(0, 0, 0, 0)
        report_layout.addWidget(_title("Report"))
        report_layout.addWidget(self.summary)
        report_layout.addWidget(self.report_table, 1)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        for part in (preview_box, mapping_box, report_box):
            splitter.addWidget(part)
        splitter.setSizes([180, 260, 200])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addLayout(file_row)
        layout.addWidget(self.sheet_info)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.buttons)

        self.browse.clicked.connect(self.choose_file)
        self.path.returnPressed.connect(lambda: self.load(self.path.text().strip()))
        self.check_button.clicked.connect(lambda: self.run_import(dry_run=True))
        self.import_button.clicked.connect(lambda: self.run_import(dry_run=False))
        self.save_report_button.clicked.connect(self.save_report)
        self.buttons.rejected.connect(self.reject)
        self._update_buttons()

    # --- the sheet -----------------------------------------------------------------------

    def choose_file(self) -> None:
        path = self.dialogs.open_file(self, "Import product data", self.start_dir, SHEET_FILTER)
        if path:
            self.path.setText(path)
            self.load(path)

    def load(self, path: str) -> Job | None:
        if not path:
            return None
        self.start_dir = str(Path(path).parent)
        self.sheet_info.setText("Reading…")
        job = self.session.preview_sheet(path)
        job.succeeded.connect(self.show_preview)
        job.failed.connect(self._on_preview_failed)
        return job

    def _on_preview_failed(self, message: str) -> None:
        self.preview = None
        self.sheet_info.setText("")
        self.preview_table.clear()
        self.preview_table.setRowCount(0)
        self.preview_table.setColumnCount(0)
        self.mapping_table.setRowCount(0)
        self._show_summary(message, error=True)
        self._update_buttons()

    def show_preview(self, preview: SheetPreview) -> None:
        self.preview = preview
        self.report = None
        self.report_table.setRowCount(0)
        self.summary.clear()
        kind = {"csv": "CSV", "json": "JSON", "jsonl": "JSON Lines"}[preview.format]
        shown = len(preview.rows)
        self.sheet_info.setText(
            f"{kind}, {preview.total:,} row{'s' if preview.total != 1 else ''}, {len(preview.columns)} columns"
            + (f" — the first {shown} shown" if shown < preview.total else "")
        )
        table = self.preview_table
        table.clear()
        table.setColumnCount(len(preview.columns))
        table.setRowCount(shown)
        table.setHorizontalHeaderLabels(preview.columns)
        for r, row in enumerate(preview.rows):
            for c, cell in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(cell))
        table.resizeColumnsToContents()

        mapping = self.mapping_table
        mapping.setRowCount(len(preview.columns))
        for r, column in enumerate(preview.columns):
            mapping.setItem(r, COL_NAME, QTableWidgetItem(column))
            box = QComboBox(mapping)
            for role, label in ROLE_LABELS.items():
                box.addItem(label, role)
            box.setCurrentIndex(box.findData(preview.suggested.roles.get(column, "extra")))
            box.setAccessibleName(f"Import {column} as")
            box.currentIndexChanged.connect(lambda _: self._mapping_changed())
            mapping.setCellWidget(r, COL_ROLE, box)
            example = next((row[r] for row in preview.rows if row[r]), "")
            mapping.setItem(r, COL_EXAMPLE, QTableWidgetItem(example))
        mapping.resizeColumnToContents(COL_NAME)
        mapping.setColumnWidth(COL_ROLE, 210)
        has_image = IMAGE_ROLE in preview.suggested.roles.values()
        self.match_by.setCurrentIndex(self.match_by.findData("path" if has_image else "sku"))
        self._update_buttons()
        self.previewShown.emit(preview)

    # --- the mapping ---------------------------------------------------------------------

    def role_box(self, column: str) -> QComboBox:
        row = self.preview.columns.index(column) if self.preview else -1
        return self.mapping_table.cellWidget(row, COL_ROLE)

    def set_role(self, column: str, role: str) -> None:
        box = self.role_box(column)
        box.setCurrentIndex(box.findData(role))

    def set_match(self, mode: str) -> None:
        self.match_by.setCurrentIndex(self.match_by.findData(mode))

    def mapping(self) -> ColumnMapping:
        """The mapping as chosen (raises MetadataError when it cannot match rows to images)."""
        assert self.preview is not None
        roles = {c: self.role_box(c).currentData() for c in self.preview.columns}
        return ColumnMapping(roles, self.match_by.currentData())

    def _mapping_changed(self) -> None:
        # A report from another mapping would mislead: the next check or import makes a new one.
        if self.report is not None and self.report.dry_run:
            self.report = None
            self.report_table.setRowCount(0)
            self.summary.clear()
            self._update_buttons()

    # --- checking and importing ----------------------------------------------------------

    def run_import(self, dry_run: bool) -> Job | None:
        if self.preview is None or self._job is not None:
            return None
        try:
            mapping = self.mapping()
        except VisualFinderError as exc:
            self._show_summary(str(exc), error=True)
            return None
        path = str(self.preview.path)
        job = self.session.import_products(path, mapping, replace_tags=self.replace_tags.isChecked(),
                                           dry_run=dry_run)  # fmt: skip
        name = Path(path).name
        self.feedback.track(job, f"Checking {name}" if dry_run else f"Importing {name}")
        self._job = job
        self._show_summary("Checking the matches…" if dry_run else "Importing…", error=False)
        job.succeeded.connect(self.show_report)
        job.failed.connect(lambda message: self._show_summary(message, error=True))
        job.cancelled.connect(lambda: self._show_summary("Stopped; nothing was changed.", error=False))
        job.finished.connect(self._on_job_finished)
        self._update_buttons()
        return job

    def _on_job_finished(self) -> None:
        self._job = None
        self._update_buttons()

    def show_report(self, report: ImportReport) -> None:
        self.report = report
        self._show_summary(report_summary(report), error=False)
        rows = report_rows(report)
        table = self.report_table
        table.setRowCount(min(len(rows), REPORT_ROWS_SHOWN))
        for r, (line, status, reference, detail) in enumerate(rows[:REPORT_ROWS_SHOWN]):
            for c, value in enumerate((str(line), status, reference, detail)):
                table.setItem(r, c, QTableWidgetItem(value))
        table.resizeColumnsToContents()
        self._update_buttons()
        self.reportShown.emit(report)
        if not report.dry_run:
            self.feedback.note(f"Imported product data for {report.images_updated:,} images", 8000)
            self.imported.emit(report)

    def save_report(self) -> Job | None:
        if self.report is None:
            return None
        suggested = str(Path(self.start_dir) / f"{Path(self.report.source).stem}-import-report.csv")
        choice = self.dialogs.save_csv(self, suggested, "Save the import report")
        if choice is None:
            return None
        dest, _excel = choice
        job = self.session.save_import_report(self.report, dest)
        job.succeeded.connect(lambda path: self.feedback.note(f"Saved the report to {path}", 6000))
        job.failed.connect(lambda message: self._show_summary(message, error=True))
        return job

    # --- state ---------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        idle = self._job is None
        ready = self.preview is not None and idle
        self.check_button.setEnabled(ready)
        self.import_button.setEnabled(ready)
        self.save_report_button.setEnabled(idle and self.report is not None)
        for widget in (self.path, self.browse, self.mapping_table, self.match_by, self.replace_tags):
            widget.setEnabled(idle)

    def _show_summary(self, text: str, error: bool) -> None:
        self.summary.setText(text)
        self.summary.setStyleSheet("color: #d64545;" if error else "")

    def done(self, result: int) -> None:
        if self._job is not None:  # closing stops a check; an import stops before it writes
            self._job.cancel()
        super().done(result)


def report_summary(report: ImportReport) -> str:
    not_matched = len(report.unmatched) + len(report.ambiguous)
    verb = "would update" if report.dry_run else "updated"
    text = (f"{report.rows:,} rows: {report.matched_rows:,} matched, {not_matched:,} not matched; "
            f"{verb} {report.images_updated:,} images.")  # fmt: skip
    if report.problems:
        text += f" {len(report.problems):,} rows have problems."
    if report.without_metadata:
        text += f" {report.without_metadata:,} images in the library have no product data."
    return text


def report_rows(report: ImportReport) -> list[tuple[int, str, str, str]]:
    """(line, result, reference, images or detail), problems and misses first, then matches."""
    rows = [(line, "Not matched", ref, "no image in the library") for line, ref in report.unmatched]
    rows += [(line, "Ambiguous", ref, f"matches {count} images; give a longer path")
             for line, ref, count in report.ambiguous]  # fmt: skip
    rows += [(line, "Problem", "", problem) for line, problem in report.problems]
    rows.sort()
    rows += [(line, "Matched", ref, ", ".join(paths)) for line, ref, paths in report.matched]
    return rows


def _title(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label
