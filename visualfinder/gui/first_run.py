"""First run: a new library whose model's weights are not on this computer yet. Before the
library opens, a dialog offers to download them (with progress) or to use a weights file the
user has; offline, it says so and how to get them. The library then opens on the chosen weights
(saved to the settings). An existing library keeps the model it recorded: no dialog.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from visualfinder.config import Settings
from visualfinder.gui import icons
from visualfinder.gui.dialogs import Dialogs
from visualfinder.gui.model_fetch import model_job, progress_widgets, show_progress, weights_missing
from visualfinder.gui.workers import Job, JobContext, JobQueue
from visualfinder.library.facade import CATALOG_FILE

log = logging.getLogger(__name__)


class FirstRunDialog(QDialog):
    """Get the model's weights: download them, or use a local file. Accepted: `chosen` holds
    settings whose model is loaded and ready; rejected: the user quit."""

    modelChecked = Signal(bool)

    def __init__(self, settings: Settings, source: str, queue: JobQueue, dialogs: Dialogs,
                 parent: QWidget | None = None):  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Welcome to visualfinder")
        self.setWindowIcon(icons.app_icon())
        self.setMinimumWidth(520)
        self.settings = settings
        self.chosen: Settings | None = None
        self._queue = queue
        self._dialogs = dialogs
        self._job: Job | None = None

        heading = QLabel("<b>visualfinder needs its image model</b>", self)
        host = source.split("//", 1)[-1].split("/", 1)[0] or source
        self.intro = QLabel(
            f"To compare images, visualfinder uses the CLIP model <b>{settings.model}</b> with the "
            f"<b>{settings.pretrained}</b> weights. They are downloaded once from {host} (a few hundred MB) "
            "and kept on this computer; after that, visualfinder works offline.<br><br>"
            "No internet here? Choose a copy of the weights file "
            "(<tt>open_clip_pytorch_model.bin</tt>) instead.",
            self,
        )
        self.intro.setWordWrap(True)
        self.intro.setToolTip(source)
        self.progress, self.message = progress_widgets(self)
        self.buttons = QDialogButtonBox(self)
        self.download_button = self.buttons.addButton("Download", QDialogButtonBox.ButtonRole.AcceptRole)
        self.file_button = self.buttons.addButton(
            "Use a weights file…", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.quit_button: QPushButton = self.buttons.addButton("Quit", QDialogButtonBox.ButtonRole.RejectRole)
        self.download_button.setDefault(True)

        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(self.intro)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

        self.download_button.clicked.connect(self.download)
        self.file_button.clicked.connect(self.use_weights_file)
        self.quit_button.clicked.connect(self.reject)

    def download(self) -> Job | None:
        return self._check(self.settings, f"Downloading {self.settings.model} ({self.settings.pretrained})…")

    def use_weights_file(self) -> Job | None:
        path = self._dialogs.choose_weights_file(self, str(Path.home()))
        if not path:
            return None
        return self._check(self.settings.replace(pretrained=path), f"Loading {Path(path).name}…")

    def _check(self, chosen: Settings, text: str) -> Job | None:
        if self._job is not None:
            return None
        self._set_busy(True, text)
        job = self._queue.submit(model_job(chosen, "Getting the model", key="first-run-model", prepare=True))
        job.progressed.connect(lambda progress: show_progress(self.progress, progress))
        job.succeeded.connect(lambda _: self._on_ready(chosen))
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self._job = job
        return job

    def _on_ready(self, chosen: Settings) -> None:
        self.chosen = chosen
        self.modelChecked.emit(True)
        self.accept()

    def _on_failed(self, message: str) -> None:
        self.message.setText(message)
        self.message.setStyleSheet("color: #d64545;")
        self.message.setVisible(True)
        self.download_button.setText("Try again")
        self.modelChecked.emit(False)

    def _on_finished(self) -> None:
        self._job = None
        self._set_busy(False)

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
            self.progress.setFormat(text)
            self.message.setStyleSheet("")
            self.message.setText(text)
            self.message.setVisible(True)
        self.download_button.setEnabled(not busy)
        self.file_button.setEnabled(not busy)

    def reject(self) -> None:
        if self._job is not None:
            self._job.cancel()  # a download cannot be interrupted; its result is ignored
            self._job = None
        super().reject()


class FirstRun(QObject):
    """Looks for the model's weights on a worker and, when they are missing, asks with the
    first-run dialog. `done` carries the settings to open the library with (the same object
    when nothing was needed, settings naming a weights file the user chose), or None: quit."""

    done = Signal(object)  # Settings | None

    def __init__(self, settings: Settings, queue: JobQueue, dialogs: Dialogs, parent: QWidget):
        super().__init__(parent)
        self.settings = settings
        self._queue = queue
        self._dialogs = dialogs
        self._parent = parent
        self.dialog: FirstRunDialog | None = None

    def start(self) -> Job:
        settings = self.settings

        def look(ctx: JobContext) -> str | None:
            if (settings.data_dir / CATALOG_FILE).exists():
                # Not a first run: the library keeps the model it recorded (maybe not the one
                # the settings name); loading it reports missing weights with a link to Settings.
                return None
            return weights_missing(settings.model, settings.pretrained)

        job = self._queue.submit(Job("Looking for the model", look, key="first-run-look"))
        job.succeeded.connect(self._found)
        # Could not even look (a broken open_clip install): open the library; loading reports it.
        job.failed.connect(lambda message: self.done.emit(settings))
        job.cancelled.connect(lambda: self.done.emit(None))
        return job

    def _found(self, source: str | None) -> None:
        if source is None:
            self.done.emit(self.settings)
            return
        log.info("the weights of %s (%s) are not here yet: first-run dialog", self.settings.model,
                 self.settings.pretrained)  # fmt: skip
        dialog = FirstRunDialog(self.settings, source, self._queue, self._dialogs, self._parent)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.done.emit(dialog.chosen))
        dialog.rejected.connect(lambda: self.done.emit(None))
        dialog.finished.connect(lambda _: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.open()
