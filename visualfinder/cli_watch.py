"""`visualfinder watch`: the folder watcher, headless, until Ctrl+C or SIGTERM.

One line per batch on stdout (what it added, updated, moved, removed and skipped); the
watcher's state changes on stderr. Stopping finishes or rolls back the batch in flight whole.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from contextlib import contextmanager

from visualfinder.cli import _library
from visualfinder.config import Settings
from visualfinder.events import LibraryChanged, WatcherStatus
from visualfinder.pipeline import IndexReport
from visualfinder.watcher import Watcher

_ERRORS_SHOWN = 3


def run_watch(args: argparse.Namespace, settings: Settings) -> int:
    with _library(settings) as library:
        if args.paths:
            library.add_folders(args.paths, watched=True)
        elif not library.watched_folders():
            print(
                "visualfinder: error: no watched folders; give folders (visualfinder watch PATH) "
                "or mark them with visualfinder index PATH --watch",
                file=sys.stderr,
            )
            return 2
        watcher = Watcher(library, args.paths or None)
        stop = threading.Event()
        unsubscribe = library.events.subscribe(_print_event)
        try:
            with _stop_on_signals(stop):
                watcher.start()
                while not stop.wait(0.25) and watcher.running:
                    pass
        finally:
            watcher.stop(timeout=None)
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


def _print_event(event: object) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(event, LibraryChanged) and event.source == "watcher" and event.report is not None:
        print(f"{stamp}  {batch_line(event.report)}", flush=True)
    elif isinstance(event, WatcherStatus):
        print(f"{stamp}  {event.state}: {event.message}", file=sys.stderr, flush=True)


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
