"""Library operations of the window: folders, indexing with progress, export, tags, settings.

Each validates on the GUI thread, starts a job through the session and reports the outcome in
the status bar, the progress panel or the message bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from visualfinder.gui.folders_panel import SkippedFilesDialog
from visualfinder.gui.session import STATUS_ERROR_LIMIT
from visualfinder.gui.settings_dialog import SettingsDialog
from visualfinder.gui.workers import Job
from visualfinder.ingest.pipeline import IndexReport

if TYPE_CHECKING:
    from visualfinder.gui.main_window import MainWindow


class LibraryActions(QObject):
    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.settings_dialog: SettingsDialog | None = None
        # Set when the settings named another model: the next snapshot asks to switch to it.
        self.offer_next_time = False
        self.pending_metric: str | None = None  # applied once the library has reopened
        self._told: set[str] = set()  # notices shown since the library opened (a dismissal sticks)

    def _jobs_named(self, prefix: str) -> list[Job]:
        return [j for j in self.window.session.writer.jobs() if j.name.startswith(prefix)]

    # --- folders -------------------------------------------------------------------------

    def add_folder(self) -> None:
        path = self.window.dialogs.choose_folder(self.window, self.window.ui.last_folder_dir)
        if path:
            self.window.ui.last_folder_dir = str(Path(path).parent)
            self.add_folders([path])

    def add_folders(self, paths: list[str]) -> list[Job]:
        watched = True if self.window.watch_new_action.isChecked() else None
        return [
            self._track_indexing(self.window.session.index([p], watched=watched), Path(p).name) for p in paths
        ]

    def reindex_all(self) -> Job | None:
        if not self.window.session.is_open:
            return None
        return self._track_indexing(self.window.session.index(None), "all folders")

    def _track_indexing(self, job: Job, name: str) -> Job:
        self.window.progress.start(job, f"Indexing {name}", job.cancel)
        job.progressed.connect(lambda p, job=job: self.window.progress.update_progress(job, p))
        job.finished.connect(lambda job=job: self.window.progress.finish(job))
        job.succeeded.connect(lambda report: self._on_indexed(report, name))
        job.failed.connect(self.window.show_error)
        job.cancelled.connect(lambda: self.window.statusBar().showMessage(f"Stopped indexing {name}", 5000))
        return job

    def _on_indexed(self, report: IndexReport, name: str) -> None:
        added = report.added + report.updated + report.moved + report.reused
        verb = "Stopped indexing" if report.cancelled else "Indexed"
        self.window.statusBar().showMessage(
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
            self.window.show_message("<br>".join(problems), "warning", rich=True)

    def remove_folder(self, path: str) -> None:
        def answer(choice: str | None) -> None:
            if choice == "Remove":
                job = self.window.session.remove_folder(path)
                job.succeeded.connect(
                    lambda n: self.window.statusBar().showMessage(
                        f"Removed {path} and its {n:,} images from the catalog", 6000
                    )
                )
                job.failed.connect(self.window.show_error)

        self.window.dialogs.ask(
            self.window,
            "Remove folder",
            f"Remove {path} from the catalog?",
            ["Remove", "Cancel"],
            answer,
            informative="Its images are forgotten by visualfinder; the files on disk are not touched.",
        )

    def set_watched(self, path: str, watched: bool) -> None:
        self.window.session.set_watched(path, watched).failed.connect(self.window.show_error)

    def show_skipped(self, folder: str = "") -> SkippedFilesDialog | None:
        snapshot = self.window.session.snapshot
        if snapshot is None:
            return None
        errors = snapshot.status.errors
        dialog = SkippedFilesDialog(errors, folder, len(errors) >= STATUS_ERROR_LIMIT, self.window)
        dialog.open()
        return dialog

    # --- tags, export, settings ----------------------------------------------------------

    def edit_tags(self, image_ids: list[int], add: list[str], remove: list[str]) -> Job:
        job = self.window.session.edit_tags(image_ids, add, remove)
        job.succeeded.connect(self.window.results_model.update_tags)
        job.failed.connect(self.window.show_error)
        return job

    def export_csv(self) -> Job | None:
        results = self.window.results_model.kept()
        if not results:
            self.window.statusBar().showMessage("No results to export", 4000)
            return None
        stem = (
            Path(self.window.query.source.name).stem
            if self.window.query
            else (self.window.query_text or "results")
        )
        suggested = str(Path(self.window.ui.last_export_dir) / f"visualfinder-{_safe_name(stem)}.csv")
        choice = self.window.dialogs.save_csv(self.window, suggested)
        if choice is None:
            return None
        dest, excel = choice
        self.window.ui.last_export_dir = str(Path(dest).parent)
        job = self.window.session.export_csv(results, dest, excel)
        job.succeeded.connect(
            lambda path: self.window.statusBar().showMessage(
                f"Exported {len(results):,} results to {path}", 8000
            )
        )
        job.failed.connect(self.window.show_error)
        return job

    def open_settings(self) -> SettingsDialog:
        library = self.window.session.library
        dialog = SettingsDialog(
            self.window.session.settings,
            self.window.session.background,
            self.window.dialogs,
            library.metric if library else None,
            self.window,
        )
        dialog.accepted.connect(lambda: self._apply_settings(dialog.chosen))
        self.settings_dialog = dialog
        # The dialog deletes itself when closed: forget it first, never touch a deleted widget.
        dialog.finished.connect(lambda _: setattr(self, "settings_dialog", None))
        dialog.open()
        return dialog

    def _apply_settings(self, chosen) -> None:
        """Save and reopen with the chosen settings; then rebuild for a new metric, or offer to
        switch the library's model (the library keeps its model and metric until told)."""
        if chosen is None:
            return
        old = self.window.session.settings
        library = self.window.session.library
        if chosen == old:
            return
        self.pending_metric = (
            chosen.metric if library is not None and chosen.metric != library.metric else None
        )
        self.offer_next_time = any(getattr(chosen, f) != getattr(old, f) for f in ("model", "pretrained"))
        if chosen.data_dir != old.data_dir:
            self.window.ui.data_dir = str(chosen.data_dir)
            self.window.clear_query()
            self.pending_metric = None  # another library keeps its own metric
        self.window.set_library_open(False)
        self.window.session.open(chosen)  # openFailed shows what went wrong

    def _tell_once(self, key: str, text: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.window.show_message(text, "warning", rich=True)

    def after_open(self) -> None:
        """Called when the library (re)opened: run what the settings asked for."""
        self._told.clear()
        metric, self.pending_metric = self.pending_metric, None
        if metric is not None:
            job = self.window.session.set_metric(metric)
            self.window.progress.start(job, f"Rebuilding the index for {metric}", job.cancel)
            job.progressed.connect(lambda p, job=job: self.window.progress.update_progress(job, p))
            job.finished.connect(lambda job=job: self.window.progress.finish(job))
            job.failed.connect(self.window.show_error)

    def check_model(self, snapshot) -> None:
        """After a snapshot: offer to switch models, resume a half-done switch, or embed stragglers."""
        status = snapshot.status
        settings = self.window.session.settings
        if self._jobs_named("Switching") or self._jobs_named("Indexing"):
            return
        if snapshot.model_differs or status.switch is not None:
            target = f"{settings.model} ({settings.pretrained})"
            if self.offer_next_time:
                self.offer_next_time = False
                self.window.dialogs.ask(
                    self.window, "Switch the library's model?",
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
        settings = self.window.session.settings
        if not self.window.session.is_open:
            return None
        job = self.window.session.switch_model(settings.model, settings.pretrained)
        name = settings.model
        self.window.progress.start(job, f"Switching to {name}", job.cancel)
        job.progressed.connect(lambda p, job=job: self.window.progress.update_progress(job, p))
        job.finished.connect(lambda job=job: self.window.progress.finish(job))
        job.succeeded.connect(lambda report: self._on_switched(report, name))
        job.failed.connect(self.window.show_error)
        return job

    def _on_switched(self, report, name: str) -> None:
        if report.swapped:
            self.window.message_bar.dismiss()
            self.window.statusBar().showMessage(f"The library now uses {name}: {report.summary()}", 10000)
            self.window.run_search()
        else:
            self.window.statusBar().showMessage(
                f"Switch to {name} stopped; it resumes where it stopped", 8000
            )


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")
    return cleaned[:60] or "results"
