"""How the window's parts tell the user what happened: the progress panel for a job, the message
bar for what needs reading, the status bar for a passing note.

The parts (library actions, result actions, activity) receive this and the widgets they act on,
never the window, so none of them imports main_window back.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QStatusBar

from visualfinder.gui.status_widgets import MessageBar, ProgressPanel
from visualfinder.gui.workers import Job


class Feedback(QObject):
    errorShown = Signal(str)

    def __init__(self, progress: ProgressPanel, message_bar: MessageBar, status_bar: QStatusBar,
                 parent: QObject | None = None):  # fmt: skip
        super().__init__(parent)
        self.progress = progress
        self.message_bar = message_bar
        self.status_bar = status_bar

    def track(self, job: Job, title: str, cancellable: bool = True) -> Job:
        """Show a job in the progress panel until it ends (with Stop when it can be cancelled)."""
        self.progress.start(job, title, job.cancel if cancellable else None)
        job.progressed.connect(lambda p, job=job: self.progress.update_progress(job, p))
        job.finished.connect(lambda job=job: self.progress.finish(job))
        return job

    def error(self, message: str, settings_link: bool = False) -> None:
        if settings_link:
            self.message_bar.show_message(
                f"{html.escape(message)} <a href='settings'>Open Settings</a>", "error", rich=True
            )
        else:
            self.message_bar.show_message(message, "error")
        self.errorShown.emit(message)

    def message(self, text: str, kind: str = "info", rich: bool = False) -> None:
        self.message_bar.show_message(text, kind, rich)

    def dismiss(self) -> None:
        self.message_bar.dismiss()

    def note(self, text: str, ms: int = 5000) -> None:
        self.status_bar.showMessage(text, ms)
