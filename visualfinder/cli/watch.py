"""`visualfinder watch`: the folder watcher, headless, until Ctrl+C or SIGTERM.

One line per batch on stdout (what it added, updated, moved, removed and skipped); the
watcher's state changes on stderr. Stopping finishes or rolls back the batch in flight whole.
With sync configured (and live push on), changes also go to the OpenSearch cluster as they
happen; the sync's state changes are logged on stderr too.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from contextlib import contextmanager

from visualfinder.cli.common import open_cli_library
from visualfinder.config import Settings
from visualfinder.events import LibraryChanged, SyncStatusChanged, WatcherStatus
from visualfinder.ingest.pipeline import IndexReport
from visualfinder.ingest.watcher import Watcher

_ERRORS_SHOWN = 3


def run_watch(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library:
        if args.paths:
            library.add_folders(args.paths, watched=True)
        elif not library.watched_folders():
            print(
                "visualfinder: error: no watched folders; give folders (visualfinder watch PATH) "
                "or mark them with visualfinder index PATH --watch",
                file=sys.stderr,
            )
            return 2
        from visualfinder.remote.worker import start_live_sync

        # The model loads while the watcher starts, so the first changed file does not wait for it.
        library.embedder.warm_in_background(("image",))
        watcher = Watcher(library, args.paths or None)
        stop = threading.Event()
        unsubscribe = library.events.subscribe(_EventPrinter())
        sync = None
        try:
            with _stop_on_signals(stop):
                watcher.start()
                sync = start_live_sync(library)
                while not stop.wait(0.25) and watcher.running:
                    pass
        finally:
            watcher.stop(timeout=None)
            if sync is not None:
                sync.stop()  # after the watcher: its last batch still goes out if the cluster is up
            unsubscribe()
    return 0 if stop.is_set() else 1  # the watcher ended on its own: it said why


def batch_line(report: IndexReport) -> str:
    """One line for one watcher batch: counts, then the first skipped files with reasons."""
    parts = [f"{report.added} added", f"{report.updated} updated", f"{report.moved} moved",
             f"{report.removed} removed"]  # fmt: skip
    if report.reused:
        parts.append(f"{report.reused} copies reused")
    if report.metadata_updated:
        parts.append(f"{report.metadata_updated} got sidecar metadata")
    parts.append(f"{len(report.errors)} skipped")
    line = ", ".join(parts) + f" ({report.seconds:.1f}s)"
    if report.errors:
        shown = "; ".join(f"{e.path}: {e.reason}" for e in report.errors[:_ERRORS_SHOWN])
        more = len(report.errors) - _ERRORS_SHOWN
        line += f": {shown}" + (f"; and {more} more (visualfinder status)" if more > 0 else "")
    for folder, reason in report.folder_errors:
        line += f"; cannot read {folder}: {reason}"
    return line


class _EventPrinter:
    """Batches on stdout; watcher states and sync state changes on stderr (a sync that keeps
    retrying while the cluster is down says so once, not every round)."""

    def __init__(self) -> None:
        self._sync_state: tuple[str, str] | None = None

    def __call__(self, event: object) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(event, LibraryChanged) and event.source == "watcher" and event.report is not None:
            print(f"{stamp}  {batch_line(event.report)}", flush=True)
        elif isinstance(event, WatcherStatus):
            print(f"{stamp}  {event.state}: {event.message}", file=sys.stderr, flush=True)
        elif isinstance(event, SyncStatusChanged) and event.state != "pushing":
            # Offline messages carry a changing retry delay: compare states, not texts, there.
            key = (event.state, "" if event.state == "offline" else event.message)
            if key != self._sync_state:
                self._sync_state = key
                print(f"{stamp}  sync {sync_line(event)}", file=sys.stderr, flush=True)


def sync_line(event: SyncStatusChanged) -> str:
    """'idle: everything is on the cluster' / 'offline: ... (12 changes pending)'."""
    if event.state == "idle":
        return "idle: everything is on the cluster"
    pending = (
        f"{event.pending} change{'s' if event.pending != 1 else ''} pending" if event.pending > 0 else ""
    )
    detail = "; ".join(part for part in (event.message, pending) if part)
    return f"{event.state}: {detail}" if detail else event.state


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """First Ctrl+C (or SIGTERM): stop cleanly. A second Ctrl+C: stop now."""

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after the batch in flight (Ctrl+C again to abort)...", file=sys.stderr, flush=True)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
