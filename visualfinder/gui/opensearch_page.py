"""Settings › OpenSearch: the cluster this library syncs to, its password (in the system keyring,
never in settings.toml), TLS, live push; Test connection, Sync now, Full resync; the outbox.

Test connection tries the values as entered (a typed password too, before it is stored). Sync
now and Full resync go through the library's own connection, as `visualfinder sync` does, so
they use the saved settings: changed values are saved with OK first.
"""

from __future__ import annotations

import datetime
import html
import os

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from visualfinder.config import Settings
from visualfinder.errors import VisualFinderError
from visualfinder.gui.dialogs import PEM_FILTER, Dialogs
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.workers import Job, JobContext
from visualfinder.remote import credentials

FIELDS = (
    "remote_url",
    "remote_index",
    "remote_user",
    "remote_verify_tls",
    "remote_ca_bundle",
    "remote_live_push",
)
ERROR_STYLE = "color: #d64545;"


class OpenSearchPage(QWidget):
    checked = Signal(object)  # ConnectionCheck
    checkFailed = Signal(str)
    synced = Signal(object)  # SyncReport
    statusShown = Signal(object)  # SyncStatus

    def __init__(self, settings: Settings, session: LibrarySession, dialogs: Dialogs,
                 parent: QWidget | None = None):  # fmt: skip
        super().__init__(parent)
        self.original = settings
        self.session = session
        self.dialogs = dialogs
        self._jobs: list[Job] = []
        self._alive = True
        self.password_stored: bool | None = None  # None: not known yet (the keyring is asked on a worker)

        self.url = QLineEdit(settings.remote_url, self)
        self.url.setPlaceholderText("https://search.example.com:9200 (empty: no sync)")
        self.url.setAccessibleName("OpenSearch URL")
        self.index = QLineEdit(settings.remote_index, self)
        self.index.setAccessibleName("Index name")
        self.user = QLineEdit(settings.remote_user, self)
        self.user.setPlaceholderText("none")
        self.user.setAccessibleName("User")
        self.password = QLineEdit(self)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setAccessibleName("Password")
        self.password_note = QLabel("Kept in the system keyring, never in settings.toml.", self)
        self.password_note.setEnabled(False)
        self.verify_tls = QCheckBox("Verify TLS certificates", self)
        self.verify_tls.setChecked(settings.remote_verify_tls)
        self.tls_warning = QLabel(
            "Without verification anyone on the network path could read or change what is sent, "
            "including the password. Give the cluster's CA certificate instead.", self
        )  # fmt: skip
        self.tls_warning.setWordWrap(True)
        self.tls_warning.setStyleSheet(ERROR_STYLE)
        self.ca_bundle = QLineEdit(settings.remote_ca_bundle, self)
        self.ca_bundle.setPlaceholderText("the system's certificates")
        self.ca_bundle.setAccessibleName("CA bundle")
        self.browse_ca = QToolButton(self)
        self.browse_ca.setText("…")
        self.browse_ca.setToolTip("A PEM file with the certificate of a cluster's private CA")
        self.live_push = QCheckBox("Push changes as they happen (while the app runs)", self)
        self.live_push.setChecked(settings.remote_live_push)

        self.test_button = QPushButton("Test connection", self)
        self.sync_button = QPushButton("Sync now", self)
        self.sync_button.setToolTip("Send the changes waiting in the outbox")
        self.resync_button = QPushButton("Full resync", self)
        self.resync_button.setToolTip("Send every image again (e.g. after the remote index was lost)")
        self.result = QLabel(self)
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(self.result.textInteractionFlags().TextSelectableByMouse)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.unsaved_note = QLabel(
            "Sync now uses the saved settings: press OK to save the changes first.", self
        )
        self.unsaved_note.setEnabled(False)
        self.unsaved_note.setWordWrap(True)

        ca_row = QHBoxLayout()
        ca_row.setContentsMargins(0, 0, 0, 0)
        ca_row.addWidget(self.ca_bundle, 1)
        ca_row.addWidget(self.browse_ca)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("URL", self.url)
        form.addRow("Index", self.index)
        form.addRow("User", self.user)
        form.addRow("Password", self.password)
        form.addRow("", self.password_note)
        form.addRow("TLS", self.verify_tls)
        form.addRow("", self.tls_warning)
        form.addRow("CA bundle", ca_row)
        form.addRow("Live push", self.live_push)
        buttons = QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addStretch(1)
        buttons.addWidget(self.sync_button)
        buttons.addWidget(self.resync_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.result)
        layout.addWidget(self.unsaved_note)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.test_button.clicked.connect(self.test_connection)
        self.sync_button.clicked.connect(lambda: self.sync(full=False))
        self.resync_button.clicked.connect(lambda: self.sync(full=True))
        self.browse_ca.clicked.connect(self._browse_ca)
        self.verify_tls.toggled.connect(lambda _: self._update())
        for edit in (self.url, self.index, self.user, self.ca_bundle):
            edit.textChanged.connect(lambda _: self._update())
        self.live_push.toggled.connect(lambda _: self._update())
        self._update()
        self.read_password_state()
        self.refresh_status()

    # --- values --------------------------------------------------------------------------

    def values(self, base: Settings) -> Settings:
        """`base` with this page's values (raises SettingsError for an unusable URL or index)."""
        return base.replace(
            remote_url=self.url.text().strip(), remote_index=self.index.text().strip() or "visualfinder",
            remote_user=self.user.text().strip(), remote_verify_tls=self.verify_tls.isChecked(),
            remote_ca_bundle=os.path.expanduser(self.ca_bundle.text().strip()),
            remote_live_push=self.live_push.isChecked(),
        )  # fmt: skip

    @property
    def typed_password(self) -> str | None:
        return self.password.text() or None

    def changed(self) -> bool:
        try:
            chosen = self.values(self.original)
        except VisualFinderError:
            return True
        return any(getattr(chosen, f) != getattr(self.original, f) for f in FIELDS)

    # --- the password --------------------------------------------------------------------

    def read_password_state(self) -> Job | None:
        """Ask the keyring (on a worker: it may prompt to unlock) whether a password is stored."""
        user, urls = self.original.remote_user, self.original.remote_urls
        if not (user and urls):
            self._show_password_state(False)
            return None

        def run(ctx: JobContext) -> bool:
            return credentials.get_password(user, urls[0]) is not None

        job = self._track(self.session.remote.call("Reading the keyring", run))
        self._on(job.succeeded, self._show_password_state)
        return job

    def _show_password_state(self, stored: bool) -> None:
        self.password_stored = stored
        self.password.setPlaceholderText("stored in the system keyring" if stored else "none stored")

    def store_password_job(self, chosen: Settings) -> Job | None:
        """A job storing the typed password for `chosen`'s user and first URL; None when none was typed."""
        password = self.typed_password
        if password is None:
            return None
        user, urls = chosen.remote_user, chosen.remote_urls
        if not (user and urls):
            raise VisualFinderError("a password needs a user and a URL")

        def run(ctx: JobContext) -> str:
            return credentials.set_password(user, urls[0], password)

        return self._track(self.session.remote.call("Storing the password", run))

    # --- cluster actions -----------------------------------------------------------------

    def test_connection(self) -> Job | None:
        try:
            chosen = self.values(self.session.settings)
        except VisualFinderError as exc:
            self._show_result(str(exc), error=True)
            return None
        if not chosen.sync_configured:
            self._show_result("Enter the cluster's URL first.", error=True)
            return None
        if not self.session.is_open:
            self._show_result("The library is not open.", error=True)
            return None
        self._show_result("Connecting…", error=False)
        job = self._track(self.session.check_remote(chosen, self.typed_password))
        self._on(job.succeeded, self._on_checked)
        self._on(job.failed, self._on_check_failed)
        return job

    def _on_checked(self, check) -> None:
        lines = [f"Connected to {html.escape(', '.join(check.urls))}"]
        lines.append(f"Server: {html.escape(check.distribution)} {html.escape(check.version)}")
        knn = {True: "k-NN plugin: installed", None: "k-NN plugin: not listed by the cluster",
               False: "<span style='color:#d64545'>k-NN plugin: not installed (vector search needs it)</span>"}  # fmt: skip
        lines.append(knn[check.knn_plugin])
        index = f"Index {html.escape(check.index)}: {html.escape(check.mapping_message)}"
        lines.append(index if check.mapping_ok else f"<span style='color:#d64545'>{index}</span>")
        self.result.setStyleSheet("")
        self.result.setText("<br>".join(lines))
        self.checked.emit(check)

    def _on_check_failed(self, message: str) -> None:
        self._show_result(message, error=True)
        self.checkFailed.emit(message)

    def sync(self, full: bool) -> Job | None:
        if not self._can_sync():
            return None
        self._show_result("Sending every image again…" if full else "Sending the outbox…", error=False)
        job = self._track(self.session.sync_remote(full))
        self._on(
            job.progressed, lambda p: self._show_result(f"{p.phase}: {p.done:,} of {p.total:,}", error=False)
        )
        self._on(job.succeeded, self._on_synced)
        self._on(job.failed, lambda message: self._show_result(message, error=True))
        self._on(job.finished, self.refresh_status)
        return job

    def _on_synced(self, report) -> None:
        verb = "Stopped after" if report.cancelled else "Synced in"
        self._show_result(f"{verb} {report.seconds:.1f} s: {report.summary()}"
                          + (" (full push)" if report.full else ""), error=bool(report.rejected))  # fmt: skip
        self.synced.emit(report)

    def refresh_status(self) -> Job | None:
        if not self.session.is_open:
            self.status.setText("")
            return None
        job = self._track(self.session.remote_status())
        self._on(job.succeeded, self._show_status)
        return job

    def _show_status(self, status) -> None:
        def when(ts: float | None) -> str:
            return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "never"

        parts = [f"Outbox: {status.pending:,} change{'s' if status.pending != 1 else ''} waiting"
                 + ("" if status.enabled or not status.configured else " (not recording changes yet)")]  # fmt: skip
        if status.rejected_count:
            parts.append(f"{status.rejected_count:,} documents rejected by the cluster")
        parts.append(f"Last sync: {when(status.last_success)}")
        if status.last_error:
            parts.append(f"<span style='color:#d64545'>Last error ({when(status.last_error_at)}): "
                         f"{html.escape(status.last_error)}</span>")  # fmt: skip
        self.status.setText("<br>".join(parts))
        self.statusShown.emit(status)

    # --- state ---------------------------------------------------------------------------

    def _can_sync(self) -> bool:
        return self.session.is_open and self.session.settings.sync_configured and not self.changed()

    def _update(self) -> None:
        self.tls_warning.setVisible(not self.verify_tls.isChecked())
        unsaved = self.changed()
        self.unsaved_note.setVisible(unsaved and self.session.settings.sync_configured)
        for button in (self.sync_button, self.resync_button):
            button.setEnabled(self._can_sync())

    def _browse_ca(self) -> None:
        current = self.ca_bundle.text().strip()
        path = self.dialogs.open_file(self, "CA certificates", os.path.dirname(current) or os.path.expanduser("~"),
                                      PEM_FILTER)  # fmt: skip
        if path:
            self.ca_bundle.setText(path)

    def _show_result(self, text: str, error: bool) -> None:
        self.result.setStyleSheet(ERROR_STYLE if error else "")
        self.result.setText(html.escape(text))

    def _track(self, job: Job) -> Job:
        self._jobs.append(job)
        job.finished.connect(lambda job=job: self._jobs.remove(job) if job in self._jobs else None)
        return job

    def _on(self, signal, slot) -> None:
        """Connect a job's signal to `slot` for as long as the page lives (see `stop`)."""
        signal.connect(lambda *args: slot(*args) if self._alive else None)

    def stop(self) -> None:
        """The dialog closes: results still on their way must not reach deleted widgets; checks
        and syncs the page started are stopped (a sync keeps what it sent; a stored password stays)."""
        self._alive = False
        for job in list(self._jobs):
            if job.name != "Storing the password":
                job.cancel()
        self._jobs.clear()
