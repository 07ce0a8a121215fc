"""Settings: model and weights (checked, and downloaded with progress, before they are accepted),
device, metric, thumbnail size and data folder; the OpenSearch cluster on its own page
(`opensearch_page.py`). The values live in `config.Settings`; the cluster's password in the keyring."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from visualfinder.config import DEVICES, METRICS, PRECISIONS, Settings
from visualfinder.errors import VisualFinderError
from visualfinder.gui import icons
from visualfinder.gui.dialogs import Dialogs
from visualfinder.gui.model_fetch import model_job, progress_widgets, show_progress
from visualfinder.gui.opensearch_page import OpenSearchPage
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.workers import Job, JobContext, JobQueue
from visualfinder.models.embedder import known_models, known_pretrained

# Offered first in the model list; any open_clip model name can be typed.
RECOMMENDED_MODELS = ("ViT-B-32-256", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-SO400M-14-SigLIP", "vf-tiny")
METRIC_LABELS = {"cosine": "Cosine similarity", "ip": "Inner product", "l2": "Euclidean (L2)"}
DEVICE_LABELS = {"auto": "Automatic (GPU if available)", "cpu": "CPU", "cuda": "NVIDIA GPU (CUDA)",
                 "mps": "Apple GPU (Metal)"}  # fmt: skip
PRECISION_LABELS = {"fp32": "Full (fp32)", "int8": "Fast on the CPU (int8)"}
MODEL_FIELDS = ("model", "pretrained", "device", "model_precision")


class SettingsDialog(QDialog):
    """Edits a copy of the settings; `accepted` means `chosen` holds valid, usable settings."""

    modelChecked = Signal(bool)

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        dialogs: Dialogs,
        library_metric: str | None = None,
        parent: QWidget | None = None,
        session: LibrarySession | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self.original = settings
        self.chosen: Settings | None = None
        self._queue = queue
        self._dialogs = dialogs
        self._job: Job | None = None
        self._names_job: Job | None = None
        # A new password was stored: the library must reconnect even if no setting changed.
        self.reconnect = False

        self.model = QComboBox(self)
        self.model.setEditable(True)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model.addItems(_unique([settings.model, *RECOMMENDED_MODELS]))
        self.model.setCurrentText(settings.model)
        self.model.setToolTip("An open_clip model name, e.g. ViT-B-32-256 or ViT-L-14")
        self.pretrained = QComboBox(self)
        self.pretrained.setEditable(True)
        self.pretrained.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.pretrained.addItems(_unique([settings.pretrained, "none"]))
        self.pretrained.setCurrentText(settings.pretrained)
        self.pretrained.setToolTip(
            "A pretrained tag (downloaded once), a weights file, or 'none' (untrained)"
        )
        self.browse_weights = QToolButton(self)
        self.browse_weights.setText("…")
        self.browse_weights.setToolTip("Use a weights file on this computer (for machines without internet)")
        self.device = QComboBox(self)
        for device in DEVICES:
            self.device.addItem(DEVICE_LABELS[device], device)
        self.device.setCurrentIndex(max(0, self.device.findData(settings.device)))
        self.precision = QComboBox(self)
        for precision in PRECISIONS:
            self.precision.addItem(PRECISION_LABELS[precision], precision)
        self.precision.setCurrentIndex(max(0, self.precision.findData(settings.model_precision)))
        self.precision.setToolTip(
            "int8 embeds about twice as fast on a CPU (ONNX Runtime) with vectors a little different "
            "from fp32's; another precision re-embeds the library, like another model"
        )
        self.metric_box = QComboBox(self)
        for metric in METRICS:
            self.metric_box.addItem(METRIC_LABELS[metric], metric)
        self.metric_box.setCurrentIndex(max(0, self.metric_box.findData(library_metric or settings.metric)))
        self.metric_note = QLabel(self)
        self.metric_note.setWordWrap(True)
        self.metric_note.setEnabled(False)
        if library_metric:
            self.metric_note.setText(
                f"This library compares images by {METRIC_LABELS[library_metric].lower()}. Another metric "
                "rebuilds its index from the stored vectors (no re-embedding)."
            )
        self.thumbnail_size = QSpinBox(self)
        self.thumbnail_size.setRange(64, 1024)
        self.thumbnail_size.setSingleStep(32)
        self.thumbnail_size.setSuffix(" px")
        self.thumbnail_size.setValue(settings.thumbnail_size)
        self.thumbnail_size.setToolTip("Size of the thumbnails made for newly indexed images")
        self.data_dir = QLineEdit(str(settings.data_dir), self)
        self.browse_data = QToolButton(self)
        self.browse_data.setText("…")
        self.browse_data.setToolTip("Choose another library folder")

        self.progress, self.message = progress_widgets(self)

        weights_row = QHBoxLayout()
        weights_row.setContentsMargins(0, 0, 0, 0)
        weights_row.addWidget(self.pretrained, 1)
        weights_row.addWidget(self.browse_weights)
        data_row = QHBoxLayout()
        data_row.setContentsMargins(0, 0, 0, 0)
        data_row.addWidget(self.data_dir, 1)
        data_row.addWidget(self.browse_data)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", self.model)
        form.addRow("Weights", weights_row)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("Metric", self.metric_box)
        form.addRow("", self.metric_note)
        form.addRow("Thumbnails", self.thumbnail_size)
        form.addRow("Data folder", data_row)
        note = QLabel(
            "Another model or precision means every image is embedded again; searches keep using the current model "
            "until that is done, and you can start it right away or later.", self
        )  # fmt: skip
        note.setWordWrap(True)
        note.setEnabled(False)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        general = QWidget(self)
        general_layout = QVBoxLayout(general)
        general_layout.addLayout(form)
        general_layout.addWidget(note)
        general_layout.addStretch(1)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(general, "General")
        self.opensearch = OpenSearchPage(settings, session, dialogs, self) if session is not None else None
        if self.opensearch is not None:
            self.tabs.addTab(self.opensearch, "OpenSearch")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.browse_weights.clicked.connect(self._browse_weights)
        self.browse_data.clicked.connect(self._browse_data)
        self.model.currentTextChanged.connect(lambda _: self._clear_message())
        self.pretrained.currentTextChanged.connect(lambda _: self._clear_message())
        self.model.currentTextChanged.connect(lambda _: self._tags_timer.start())
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowIcon(icons.app_icon())
        # open_clip's model and weight names need torch imported: fetched on the worker.
        self._tags_timer = QTimer(self, singleShot=True, interval=300)
        self._tags_timer.timeout.connect(self._load_names)
        self._load_names()

    def _load_names(self) -> None:
        model = self.model.currentText().strip()

        def run(ctx: JobContext) -> tuple[list[str], list[str]]:
            return known_models(), known_pretrained(model)

        job = self._queue.submit(Job("Listing models", run, key="settings-names"))
        job.succeeded.connect(lambda names, model=model: self._show_names(model, *names))
        self._names_job = job

    def _show_names(self, model: str, models: list[str], tags: list[str]) -> None:
        if model != self.model.currentText().strip():
            return  # the user typed on since
        if self.model.count() <= len(RECOMMENDED_MODELS) + 1:
            current = self.model.currentText()
            self.model.blockSignals(True)
            known = set(_unique([self.original.model, *RECOMMENDED_MODELS]))
            self.model.insertSeparator(self.model.count())
            self.model.addItems([m for m in models if m not in known])
            self.model.setCurrentText(current)
            self.model.blockSignals(False)
        current = self.pretrained.currentText()
        self.pretrained.blockSignals(True)
        self.pretrained.clear()
        self.pretrained.addItems(_unique([*tags, "none"]))
        self.pretrained.setCurrentText(current)
        self.pretrained.blockSignals(False)
        self.pretrained.setToolTip(
            f"Weights for {model}: {', '.join(tags) or 'none known'}; or a weights file, or 'none' (untrained)"
        )

    # --- values --------------------------------------------------------------------------

    def values(self) -> Settings:
        """The settings as entered (raises SettingsError when one is unusable)."""
        chosen = self.original.replace(
            model=self.model.currentText().strip(),
            pretrained=self.pretrained.currentText().strip() or "none",
            device=self.device.currentData(),
            model_precision=self.precision.currentData(),
            metric=self.metric_box.currentData(),
            thumbnail_size=self.thumbnail_size.value(),
            data_dir=Path(os.path.expanduser(self.data_dir.text().strip() or str(self.original.data_dir))),
        )
        return self.opensearch.values(chosen) if self.opensearch is not None else chosen

    def model_changed(self, settings: Settings) -> bool:
        return any(getattr(settings, f) != getattr(self.original, f) for f in MODEL_FIELDS)

    # --- accept: check (and fetch) the model first ---------------------------------------

    def accept(self) -> None:
        if self._job is not None:
            return
        try:
            chosen = self.values()
            storing = self.opensearch.store_password_job(chosen) if self.opensearch is not None else None
        except VisualFinderError as exc:
            self._show_message(str(exc), error=True)
            return
        if storing is not None:  # into the keyring first; the settings follow once it is there
            self._set_busy(True, "Storing the password in the system keyring…")
            self._job = storing
            storing.succeeded.connect(lambda _: self._on_password_stored(chosen))
            storing.failed.connect(self._on_password_failed)
            return
        self._accept_values(chosen)

    def _on_password_stored(self, chosen: Settings) -> None:
        self.reconnect = True
        self.opensearch.password.clear()
        self._job = None
        self._set_busy(False)
        self._accept_values(chosen)

    def _on_password_failed(self, message: str) -> None:
        self._job = None
        self._set_busy(False)
        self._show_message(message, error=True)

    def _accept_values(self, chosen: Settings) -> None:
        if not self.model_changed(chosen):
            self.chosen = chosen
            super().accept()
            return
        self._check_model(chosen)

    def _check_model(self, chosen: Settings) -> None:
        self._set_busy(True, f"Loading {chosen.model} ({chosen.pretrained})…")
        job = self._queue.submit(model_job(chosen))
        job.progressed.connect(lambda progress: show_progress(self.progress, progress))
        job.succeeded.connect(lambda _: self._on_model_ready(chosen))
        job.failed.connect(self._on_model_failed)
        job.finished.connect(self._on_job_finished)
        self._job = job

    def _on_model_ready(self, chosen: Settings) -> None:
        self.chosen = chosen
        self.modelChecked.emit(True)
        super().accept()

    def _on_model_failed(self, message: str) -> None:
        self._show_message(message, error=True)
        self.modelChecked.emit(False)

    def _on_job_finished(self) -> None:
        self._job = None
        self._set_busy(False)

    def reject(self) -> None:
        if self._job is not None:
            self._job.cancel()  # a download cannot be interrupted; its result is ignored
            self._job = None
        super().reject()

    def done(self, result: int) -> None:
        # The dialog deletes itself when closed: a job finishing later must not reach it.
        self._tags_timer.stop()
        if self._names_job is not None:
            self._names_job.cancel()
        if self.opensearch is not None:
            self.opensearch.stop()
        super().done(result)

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
            self.progress.setFormat(text)
            self._show_message(text, error=False)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not busy)
        for widget in (self.model, self.pretrained, self.device, self.precision, self.browse_weights):
            widget.setEnabled(not busy)

    def _show_message(self, text: str, error: bool) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #d64545;" if error else "")
        self.message.setVisible(True)

    def _clear_message(self) -> None:
        if self._job is None:
            self.message.setVisible(False)

    def _browse_weights(self) -> None:
        current = self.pretrained.currentText()
        start = str(Path(current).parent) if os.sep in current or "/" in current else str(Path.home())
        path = self._dialogs.choose_weights_file(self, start)
        if path:
            self.pretrained.setCurrentText(path)

    def _browse_data(self) -> None:
        path = self._dialogs.choose_folder(self, self.data_dir.text(), "Choose the library folder")
        if path:
            self.data_dir.setText(path)


def _unique(items) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))
