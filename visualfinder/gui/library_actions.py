"""Library operations of the window: folders, indexing with progress, product data, settings, the model.

Each validates on the GUI thread, starts a job through the session and reports the outcome
through Feedback. It receives what it acts on; what the window must do in turn (reopen, search
again) it asks with a signal.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from visualfinder.gui.dialogs import Dialogs
from visualfinder.gui.feedback import Feedback
from visualfinder.gui.folders_panel import SkippedFilesDialog
from visualfinder.gui.import_dialog import ImportDialog
from visualfinder.gui.session import STATUS_ERROR_LIMIT, LibrarySession
from visualfinder.gui.settings_dialog import SettingsDialog
from visualfinder.gui.ui_state import UiState
from visualfinder.gui.workers import Job
from visualfinder.ingest.pipeline import IndexReport
from visualfinder.models.embedder import model_label


class LibraryActions(QObject):
    reopening = Signal(bool)  # the settings changed: the library reopens (True: another data folder)
    modelSwitched = Signal()  # the library's vectors now come from another model: search again
    productsImported = Signal(object)  # ImportReport: the results' product data changed, search again

    def __init__(self, session: LibrarySession, dialogs: Dialogs, ui: UiState, feedback: Feedback,
                 parent: QWidget):  # fmt: skip
        super().__init__(parent)
        self.session = session
        self.dialogs = dialogs
        self.ui = ui
        self.feedback = feedback
        self.parent_widget = parent  # dialogs open over it
        self.settings_dialog: SettingsDialog | None = None
        self.import_dialog: ImportDialog | None = None
        # Set when the settings named another model: the next snapshot asks to switch to it.
        self.offer_next_time = False
        self.pending_metric: str | None = None  # applied once the library has reopened
        self._told: set[str] = set()  # notices shown since the library opened (a dismissal sticks)

    def _jobs_named(self, prefix: str) -> list[Job]:
        return [j for j in self.session.writer.jobs() if j.name.startswith(prefix)]

    # --- folders -------------------------------------------------------------------------

    def add_folder(self) -> None:
        path = self.dialogs.choose_folder(self.parent_widget, self.ui.last_folder_dir)
        if path:
            self.ui.last_folder_dir = str(Path(path).parent)
            self.add_folders([path])

    def add_folders(self, paths: list[str]) -> list[Job]:
        watched = True if self.ui.watch_new_folders else None
        return [self._track_indexing(self.session.index([p], watched=watched), Path(p).name) for p in paths]

    def reindex_all(self) -> Job | None:
        if not self.session.is_open:
            return None
        return self._track_indexing(self.session.index(None), "all folders")

    def retry_skipped(self) -> Job | None:
        """Every skipped file read again now, whether or not it changed (`index --retry-skipped`)."""
        if not self.session.is_open:
            return None
        return self._track_indexing(self.session.index(None, retry_skipped=True), "skipped files")

    def _track_indexing(self, job: Job, name: str) -> Job:
        self.feedback.track(job, f"Indexing {name}")
        job.succeeded.connect(lambda report: self._on_indexed(report, name))
        job.failed.connect(self.feedback.error)
        job.cancelled.connect(lambda: self.feedback.note(f"Stopped indexing {name}", 5000))
        return job

    def _on_indexed(self, report: IndexReport, name: str) -> None:
        added = report.added + report.updated + report.moved + report.reused
        verb = "Stopped indexing" if report.cancelled else "Indexed"
        self.feedback.note(
            f"{verb} {name}: {added:,} images added or updated, "
            f"{report.removed:,} removed, {len(report.errors):,} skipped "
            f"({report.seconds:.1f} s)",
            10000,
        )
        problems = [f"{Path(p).name}: {reason}" for p, reason in report.folder_errors]
        if report.errors:
            problems.append(
                f"{len(report.errors):,} file{'s' if len(report.errors) > 1 else ''} could not be read "
                f"and {'were' if len(report.errors) > 1 else 'was'} skipped. <a href='skipped'>See why</a>"
            )
        if problems:
            self.feedback.message("<br>".join(problems), "warning", rich=True)

    def remove_folder(self, path: str) -> None:
        def answer(choice: str | None) -> None:
            if choice == "Remove":
                job = self.session.remove_folder(path)
                job.succeeded.connect(
                    lambda n: self.feedback.note(
                        f"Removed {path} and its {n:,} images from the catalog", 6000
                    )
                )
                job.failed.connect(self.feedback.error)

        self.dialogs.ask(
            self.parent_widget,
            "Remove folder",
            f"Remove {path} from the catalog?",
            ["Remove", "Cancel"],
            answer,
            informative="Its images are forgotten by visualfinder; the files on disk are not touched.",
        )

    def set_watched(self, path: str, watched: bool) -> None:
        self.session.set_watched(path, watched).failed.connect(self.feedback.error)

    def show_skipped(self, folder: str = "") -> SkippedFilesDialog | None:
        snapshot = self.session.snapshot
        if snapshot is None:
            return None
        errors = snapshot.status.errors
        dialog = SkippedFilesDialog(errors, folder, len(errors) >= STATUS_ERROR_LIMIT, self.parent_widget)
        dialog.retryRequested.connect(self.retry_skipped)
        dialog.open()
        return dialog

    # --- product data ------------------------------------------------------------------

    def import_products(self) -> ImportDialog:
        """File › Import product data…: preview, map, check and import a product sheet."""
        if self.import_dialog is not None:
            self.import_dialog.raise_()
            return self.import_dialog
        dialog = ImportDialog(self.session, self.feedback, self.dialogs, self.ui.last_folder_dir,
                              self.parent_widget)  # fmt: skip
        dialog.imported.connect(self.productsImported)
        self.import_dialog = dialog
        dialog.finished.connect(lambda _: setattr(self, "import_dialog", None))
        dialog.open()
        return dialog

    # --- settings and the model ---------------------------------------------------------

    def open_settings(self) -> SettingsDialog:
        library = self.session.library
        dialog = SettingsDialog(
            self.session.settings,
            self.session.background,
            self.dialogs,
            library.metric if library else None,
            self.parent_widget,
            session=self.session,
        )
        dialog.accepted.connect(lambda: self._apply_settings(dialog.chosen, dialog.reconnect))
        self.settings_dialog = dialog
        # The dialog deletes itself when closed: forget it first, never touch a deleted widget.
        dialog.finished.connect(lambda _: setattr(self, "settings_dialog", None))
        dialog.open()
        return dialog

    def _apply_settings(self, chosen, reconnect: bool = False) -> None:
        """Save and reopen with the chosen settings; then rebuild for a new metric, or offer to
        switch the library's model (the library keeps its model and metric until told).
        `reconnect`: a new cluster password was stored, so reopen even with the same settings."""
        if chosen is None:
            return
        old = self.session.settings
        library = self.session.library
        if chosen == old and not reconnect:
            return
        self.pending_metric = (
            chosen.metric if library is not None and chosen.metric != library.metric else None
        )
        self.offer_next_time = any(
            getattr(chosen, f) != getattr(old, f) for f in ("model", "pretrained", "model_precision")
        )
        moved = chosen.data_dir != old.data_dir
        if moved:
            self.ui.data_dir = str(chosen.data_dir)
            self.pending_metric = None  # another library keeps its own metric
        self.reopening.emit(moved)
        self.session.open(chosen)  # openFailed shows what went wrong

    def _tell_once(self, key: str, text: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.feedback.message(text, "warning", rich=True)

    def after_open(self) -> None:
        """Called when the library (re)opened: run what the settings asked for."""
        self._told.clear()
        metric, self.pending_metric = self.pending_metric, None
        if metric is not None:
            job = self.session.set_metric(metric)
            self.feedback.track(job, f"Rebuilding the index for {metric}")
            job.failed.connect(self.feedback.error)

    def check_model(self, snapshot) -> None:
        """After a snapshot: offer to switch models, resume a half-done switch, or embed stragglers."""
        status = snapshot.status
        settings = self.session.settings
        if self._jobs_named("Switching") or self._jobs_named("Indexing"):
            return
        if snapshot.model_differs or status.switch is not None:
            target = model_label(settings.model, settings.pretrained, settings.model_precision)
            if self.offer_next_time:
                self.offer_next_time = False
                self.dialogs.ask(
                    self.parent_widget, "Switch the library's model?",
                    f"Embed the library's {status.stats.ok:,} images with {target} now?",
                    ["Switch now", "Later"],
                    lambda answer: self.switch_model() if answer == "Switch now" else None,
                    informative="Searches keep using the current model until every image is embedded. "
                    "The switch runs in the background and can be stopped; it resumes where it stopped.",
                )  # fmt: skip
            elif status.switch is not None:
                done = status.switch
                self._tell_once(f"switch:{done.target.key}",
                    f"A switch to {done.target.name} is half done ({done.embedded:,} of {done.total:,} images). "
                    "<a href='switch'>Resume it</a>")  # fmt: skip
            else:
                self._tell_once(f"differs:{status.requested_model_key}",
                    f"The settings ask for {target}, but this library's images are embedded with "
                    f"{status.model}. <a href='switch'>Switch the library</a>")  # fmt: skip
        elif status.stats.needs_embedding:
            self._tell_once("needs-embedding",
                f"{status.stats.needs_embedding:,} images have no vector for {status.model} yet and are not "
                "searched. <a href='reindex'>Embed them now</a>")  # fmt: skip

    def switch_model(self) -> Job | None:
        settings = self.session.settings
        if not self.session.is_open:
            return None
        job = self.session.switch_model(settings.model, settings.pretrained)
        name = settings.model
        self.feedback.track(job, f"Switching to {name}")
        job.succeeded.connect(lambda report: self._on_switched(report, name))
        job.failed.connect(self.feedback.error)
        return job

    def _on_switched(self, report, name: str) -> None:
        if report.swapped:
            self.feedback.dismiss()
            self.feedback.note(f"The library now uses {name}: {report.summary()}", 10000)
            self.modelSwitched.emit()
        else:
            self.feedback.note(f"Switch to {name} stopped; it resumes where it stopped", 8000)
