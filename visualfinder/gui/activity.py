"""Work the window did not start: the folder watcher's state and batches, other processes',
and the continuous sync to OpenSearch (its state in the status bar, the error as tooltip).

The watcher's state is shown in the status bar (its message as tooltip) and per folder in the
folders panel; its batches appear in the progress panel, where Stop pauses watching (the batch
in flight ends at a commit). `File > Watch folders for changes` turns it back on.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QWidget

from visualfinder.events import JobProgress, LibraryChanged, SyncStatusChanged, WatcherStatus
from visualfinder.gui.feedback import Feedback
from visualfinder.gui.folders_panel import FoldersPanel
from visualfinder.gui.session import LibrarySession

# A batch reports no "done": its progress task closes once no progress came for this long.
QUIET_MS = 1500
STATE_TEXT = {
    "starting": "Starting to watch…",
    "watching": "Watching folders",
    "polling": "Watching folders (polling)",
    "folder-missing": "Watched folder missing",
    "busy": "Watcher waiting",
    "error": "Watcher paused by an error",
    "stopped": "",
}
SYNC_TEXT = {
    "pushing": "Syncing…",
    "idle": "Synced",
    "pending": "Sync pending",
    "offline": "Sync offline",
    "rejected": "Sync: documents rejected",
    "error": "Sync stopped by an error",
    "stopped": "",
}


class Activity(QObject):
    def __init__(self, session: LibrarySession, feedback: Feedback, watcher_label: QLabel, sync_label: QLabel,
                 folders_panel: FoldersPanel, parent: QWidget):  # fmt: skip
        super().__init__(parent)
        self.session = session
        self.feedback = feedback
        self.watcher_label = watcher_label
        self.sync_label = sync_label
        self.folders_panel = folders_panel
        self.action = QAction("Watch folders for &changes", parent, checkable=True)
        self.action.setChecked(session.watch)
        self.action.setStatusTip("Index new, changed and deleted files in folders ticked Watch as it happens")
        self.action.toggled.connect(self.set_watching)
        self._quiet = QTimer(self, singleShot=True, interval=QUIET_MS)
        self._quiet.timeout.connect(self._finish_external)
        session.externalProgress.connect(self.on_progress)
        session.watcherStatus.connect(self.on_status)
        session.syncStatus.connect(self.on_sync_status)
        session.libraryChanged.connect(self.on_changed)

    def set_watching(self, on: bool) -> None:
        job = self.session.set_watching(on)
        if not on:
            self._show_paused()
        if job is not None:
            job.failed.connect(self.feedback.error)

    def _show_paused(self) -> None:
        label = self.watcher_label
        label.setText("Not watching")
        label.setToolTip("Turn on File › Watch folders for changes to index changes as they happen")
        label.setVisible(True)
        self.folders_panel.set_watch_modes({})

    def on_progress(self, event: JobProgress) -> None:
        key = f"external:{event.source}"
        if event.source == "watcher":
            title, cancel = "Indexing changes in watched folders", lambda: self.action.setChecked(False)
        else:
            title, cancel = event.source.capitalize(), None
        self.feedback.progress.update_progress(key, event.progress, title, cancel)
        self._quiet.start()

    def on_status(self, event: WatcherStatus) -> None:
        label = self.watcher_label
        text = STATE_TEXT.get(event.state, event.state.capitalize())
        watched = len(event.folders)
        if event.state == "watching" and watched:
            text = f"Watching {watched} folder{'s' if watched != 1 else ''}"
        elif event.state == "watching":
            text = ""  # nothing ticked Watch: nothing to say
        elif event.state == "stopped" and not self.action.isChecked():
            self._show_paused()  # the watcher's own 'stopped' comes after the user paused it
            return
        label.setText(text)
        label.setToolTip(event.message[:1].upper() + event.message[1:] if event.message else "")
        label.setVisible(bool(text))
        self.folders_panel.set_watch_modes(dict(event.folders))
        if event.state in ("error", "folder-missing") and event.message:
            self.feedback.message(event.message[:1].upper() + event.message[1:], "warning")

    def on_sync_status(self, event: SyncStatusChanged) -> None:
        label = self.sync_label
        text = SYNC_TEXT.get(event.state, event.state.capitalize())
        if text and event.pending > 0 and event.state != "idle":
            text += f" ({event.pending:,} to send)"
        label.setText(text)
        cluster = ", ".join(self.session.settings.remote_urls)
        label.setToolTip("\n".join(part for part in (f"OpenSearch: {cluster}", event.message) if part))
        label.setVisible(bool(text))

    def on_changed(self, event: LibraryChanged) -> None:
        if event.source == "watcher":
            self._finish_external()

    def _finish_external(self) -> None:
        for task in self.feedback.progress.tasks:
            if isinstance(task.key, str) and task.key.startswith("external:"):
                self.feedback.progress.finish(task.key)
