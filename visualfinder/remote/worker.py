"""Continuous sync: a background thread that pushes the outbox whenever the library changes.

    worker = SyncWorker(library).start()     # the watcher or the GUI, after open_library()
    ...                                      # index, edit tags, search: nothing waits on it
    worker.stop()                            # before library.close()

It wakes on `LibraryChanged` events (the listener only sets a flag, so emitters never wait),
waits `remote_push_delay_s` so a burst of changes goes out together, and runs the same
Syncer as `visualfinder sync`. When the cluster is slow or down, only this thread waits:
changes stay in the outbox and it tries again with a growing pause (up to `max_retry_s`).
It reports its state as `SyncStatusChanged` events on `library.events`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from visualfinder.errors import LibraryBusyError, RemoteError, RemoteUnavailableError, VisualFinderError
from visualfinder.events import LibraryChanged, SyncStatusChanged
from visualfinder.jobs import CancelToken

if TYPE_CHECKING:
    from visualfinder.library.facade import Library
    from visualfinder.remote.opensearch import RemoteCluster

log = logging.getLogger(__name__)


def start_live_sync(library: Library) -> SyncWorker | None:
    """Start continuous sync when the library has a cluster and live push is on; None otherwise."""
    settings = library.settings
    if not (settings.sync_configured and settings.remote_live_push):
        return None
    log.info("pushing changes to %s as they happen", ", ".join(settings.remote_urls))
    return SyncWorker(library).start()


class SyncWorker:
    """Pushes a library's changes to its OpenSearch index in the background."""

    def __init__(self, library: Library, cluster: RemoteCluster | None = None, *, max_retry_s: float = 300.0):
        self.library = library
        self._cluster = cluster
        self.delay_s = library.settings.remote_push_delay_s
        self.max_retry_s = max_retry_s
        self._wake = threading.Event()
        self._cancel = CancelToken()
        self._thread: threading.Thread | None = None
        self._unsubscribe = None
        self.state = "stopped"
        self.last_error: str | None = None
        self.rounds = 0  # completed sync runs, successful or not (tests and the GUI's status line)

    def start(self) -> SyncWorker:
        if self._thread is not None:
            return self
        self._unsubscribe = self.library.events.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._run, name="visualfinder-sync", daemon=True)
        self._wake.set()  # push whatever is pending from before
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the request in flight (bounded by remote_timeout_s); safe to call twice."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._cancel.cancel()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the sync thread is still waiting on OpenSearch; leaving it to finish on its own")
            self._thread = None
        self._set_state("stopped")

    def push_now(self) -> None:
        """Sync as soon as possible (e.g. a "Sync now" button)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_event(self, event: object) -> None:
        if isinstance(event, LibraryChanged):
            self._wake.set()

    def _run(self) -> None:
        retry_in: float | None = None
        failures = 0
        syncer = None
        while not self._cancel.cancelled:
            self._wake.wait(retry_in)
            if self._cancel.cancelled:
                break
            # Let a burst of changes settle, then take them all in one go.
            if self.delay_s and self._cancel.sleep(self.delay_s):
                break
            self._wake.clear()
            self._set_state("pushing")
            try:
                if syncer is None:
                    syncer = self.library.remote.syncer(self._cluster)
                report = syncer.run(cancel=self._cancel, wait_lock=0.0)
                failures, retry_in = 0, None
                if report.rejected:
                    self.last_error = (
                        f"{len(report.rejected)} documents rejected by OpenSearch: {report.rejected[0].error}"
                    )
                    self._set_state("rejected", self.last_error)
                else:
                    self.last_error = None
                    self._set_state("idle" if report.pending == 0 else "pending")
            except LibraryBusyError:
                retry_in = max(self.delay_s, 5.0)  # another process is syncing; look again soon
                self._set_state("pending", "another process is syncing")
            except RemoteUnavailableError as exc:
                failures += 1
                retry_in = min(self.max_retry_s, 2.0 * 2 ** min(failures, 16))
                self.last_error = str(exc)
                self._set_state("offline", f"{exc} (retrying in {retry_in:.1f}s)")
            except (RemoteError, VisualFinderError) as exc:
                # Needs the user (mismatch, credentials, settings): retry slowly in case they fix it.
                retry_in = self.max_retry_s
                self.last_error = str(exc)
                self._set_state("error", str(exc))
                syncer = None
            except Exception as exc:  # never let the thread die silently
                log.exception("sync worker failed")
                retry_in = self.max_retry_s
                self.last_error = f"unexpected error: {exc}"
                self._set_state("error", self.last_error)
                syncer = None
            finally:
                self.rounds += 1
        self._set_state("stopped")

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = state
        try:
            pending = self.library.remote.pending()
        except Exception:  # the catalog may be closing
            pending = -1
        self.library.events.emit(SyncStatusChanged(state, pending, message, time.time()))
