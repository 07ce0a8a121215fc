"""How each watched folder is watched: OS notifications or polling, and whether it is there.

`WatchedRoots` owns the watchdog observers and one `WatchedRoot` per watched folder. It
schedules folders (notifications, or polling for network drives and when notifications fail:
the inotify watch limit), and notices folders that vanish (an unmounted drive), come back,
are replaced or lose their watch. Its methods return the folders that need a catch-up by stat
diff; `watcher.Watcher` runs those through the library.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingEmitter

from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.ingest import watchfs
from visualfinder.ingest.scanner import root_problem
from visualfinder.paths import is_within

log = logging.getLogger(__name__)

# What the watcher listens to. Leaving out opens and reads matters: indexing reads every file
# it is told about, and each read would otherwise come back as events.
EVENTS = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileAttribEvent, FileMovedEvent, FileDeletedEvent,
    DirCreatedEvent, DirAttribEvent, DirMovedEvent, DirDeletedEvent,
]  # fmt: skip


@dataclass
class WatchedRoot:
    """One watched folder and how it is watched now."""

    path: str
    mode: str = "missing"  # "watching" (notifications) | "polling" | "missing" | "stopped"
    reason: str = ""
    watch: ObservedWatch | None = None
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None


class WatchedRoots:
    """The watched folders and their observers; used from the watcher's thread only, except
    `paths` and `logical()`, which observer threads read (tuples swapped whole)."""

    def __init__(self, catalog: Catalog, settings: Settings, handler: FileSystemEventHandler):
        self.catalog = catalog
        self.settings = settings
        self.handler = handler
        self.roots: dict[str, WatchedRoot] = {}
        self.paths: tuple[str, ...] = ()  # longest first, so the first match is the deepest
        # Watches are on real paths; a folder registered through a symlink reports under its name.
        self._real_paths: tuple[tuple[str, str], ...] = ()
        self._native: BaseObserver | None = None
        self._polling: BaseObserver | None = None

    def folders(self) -> dict[str, str]:
        return {r.path: r.mode for r in list(self.roots.values())}

    def all(self) -> list[WatchedRoot]:
        return list(self.roots.values())

    def watching(self) -> list[str]:
        """Folders watched by notifications (whose events an overflow may have lost)."""
        return [r.path for r in self.roots.values() if r.mode == "watching"]

    def logical(self, path: str) -> str:
        """An event's path under the folder's registered name."""
        for real, logical in self._real_paths:
            if is_within(path, real):
                return logical + path[len(real) :]
        return path

    def root_of(self, path: str) -> str | None:
        return next((r for r in self.paths if is_within(path, r)), None)

    # --- what changes ----------------------------------------------------------------------

    def sync(self, desired: list[str]) -> list[str]:
        """Watch exactly the `desired` folders; returns the newly watched ones."""
        added = [p for p in desired if p not in self.roots]
        for path in [p for p in self.roots if p not in desired]:
            self._unwatch(self.roots.pop(path))
        for path in added:
            self.roots[path] = WatchedRoot(path)
        self._publish()
        return [p for p in added if self._watch(self.roots[p])]

    def check(self) -> list[str]:
        """Notice folders that vanished, came back, were replaced, or lost their watch;
        returns those watched again, which need a catch-up."""
        back = []
        for root in list(self.roots.values()):
            # Emptied while watched (same folder) is not unmounted (another folder under the name).
            same = root.identity is not None and _identity(root.path) == root.identity
            problem = root_problem(self.catalog, root.path, empty_ok=same)
            if root.mode == "missing":
                if problem is None and self._watch(root):
                    log.info("watched folder %s is back; applying what changed", root.path)
                    back.append(root.path)
                elif problem is not None:
                    root.reason = problem
            elif problem is not None:
                log.warning("watched folder %s: %s; its images are kept", root.path, problem)
                self._unwatch(root)
                root.mode, root.reason = "missing", problem
            elif _identity(root.path) != root.identity or not self._watch_alive(root):
                log.info("watched folder %s was replaced or lost its watch; watching it again", root.path)
                self._unwatch(root)
                if self._watch(root):
                    back.append(root.path)
        return back

    def rewatch(self, paths: set[str]) -> list[str]:
        """Schedule folders again (so subfolders that became readable get watches)."""
        again = [r for r in self.roots.values() if r.path in paths and r.mode == "watching"]
        for root in again:
            self._unwatch(root)
            self._watch(root)
        return [r.path for r in again if r.mode != "missing"]

    def check_budget(self) -> list[str]:
        """New subfolders each need an inotify watch: poll instead once the budget is spent.
        Returns the folders switched to polling (their new subfolders may have been missed)."""
        watched = [r for r in self.roots.values() if r.mode == "watching"]
        if not watched or self._native is None or not _is_inotify(self._native):
            return []
        room, reason = watchfs.inotify_has_room(watched[0].path)
        if room:
            return []
        for root in watched:
            self._unwatch(root)
            self._watch(root, force_polling=reason)
        return [r.path for r in watched if r.mode != "missing"]

    def close(self) -> None:
        for observer in (self._native, self._polling):
            if observer is not None:
                observer.stop()
        for observer in (self._native, self._polling):
            if observer is not None and observer.is_alive():
                observer.join(10)
        self._native = self._polling = None
        for root in self.roots.values():
            root.watch = root.observer = None
            if root.mode != "missing":
                root.mode = "stopped"

    # --- scheduling ------------------------------------------------------------------------

    def _watch(self, root: WatchedRoot, force_polling: str = "") -> bool:
        """Schedule `root` with notifications or polling; False when it is not available."""
        problem = root_problem(self.catalog, root.path)
        if problem is not None:
            root.mode, root.reason = "missing", problem
            return False
        root.identity = _identity(root.path)
        polling_reason = force_polling or self._polling_reason(root.path)
        if not polling_reason:
            try:
                observer = self._native_observer()
                root.watch = observer.schedule(
                    self.handler, os.path.realpath(root.path), recursive=True, event_filter=EVENTS
                )
                root.observer = observer
            except OSError as exc:
                polling_reason = watchfs.describe_inotify_error(exc)
            else:
                room, reason = watchfs.inotify_has_room(root.path) if _is_inotify(observer) else (True, "")
                if room:
                    root.mode, root.reason = "watching", ""
                    self._publish()
                    return True
                self._unwatch(root)
                polling_reason = reason
        if self.settings.watch_polling == "never":
            root.mode, root.reason = (
                "missing",
                f"cannot watch it: {polling_reason} (watch_polling is 'never')",
            )
            log.error("watched folder %s: %s", root.path, root.reason)
            return False
        try:
            observer = self._polling_observer()
            root.watch = observer.schedule(
                self.handler, os.path.realpath(root.path), recursive=True, event_filter=EVENTS
            )
            root.observer = observer
        except OSError as exc:
            root.mode, root.reason = "missing", f"cannot read it: {exc.strerror or exc}"
            return False
        root.mode, root.reason = "polling", polling_reason
        self._publish()
        log.warning("watching %s by polling every %gs: %s", root.path, self.settings.watch_poll_interval_s,
                    polling_reason)  # fmt: skip
        return True

    def _polling_reason(self, path: str) -> str:
        setting = self.settings.watch_polling
        if setting == "always":
            return "watch_polling is 'always'"
        if setting == "auto" and watchfs.is_network_path(path):
            return "it is on a network drive, whose changes notifications may miss"
        return ""

    def _unwatch(self, root: WatchedRoot) -> None:
        if root.observer is not None and root.watch is not None:
            try:
                root.observer.unschedule(root.watch)
            except (KeyError, OSError):  # already gone with its folder
                pass
        root.watch = root.observer = None

    def _watch_alive(self, root: WatchedRoot) -> bool:
        if root.observer is None or root.watch is None:
            return False
        return any(e.watch == root.watch and e.is_alive() for e in list(root.observer.emitters))

    def _native_observer(self) -> BaseObserver:
        if self._native is None:
            from watchdog.observers import Observer

            observer = Observer()
            observer.daemon = True
            observer.start()
            self._native = observer
        return self._native

    def _polling_observer(self) -> BaseObserver:
        if self._polling is None:
            observer = BaseObserver(_PacedPollingEmitter, timeout=self.settings.watch_poll_interval_s)
            observer.daemon = True
            observer.start()
            self._polling = observer
        return self._polling

    def _publish(self) -> None:
        paths = tuple(sorted(self.roots, key=len, reverse=True))
        reals = ((os.path.realpath(p), p) for p in paths)
        self._real_paths = tuple(sorted(((r, p) for r, p in reals if r != p), key=lambda rp: -len(rp[0])))
        self.paths = paths


class _PacedPollingEmitter(PollingEmitter):
    """Rescans a folder every `watch_poll_interval_s`, or more rarely when a rescan is slow
    (a big folder, a slow network drive): polling then costs at most ~1/POLL_PACE of a core.
    lstat: like inotify, symlinked folders are not followed (no loops, no double counting)."""

    POLL_PACE = 20

    def __init__(self, event_queue, watch, *, timeout=1.0, event_filter=None):
        super().__init__(event_queue, watch, timeout=timeout, event_filter=event_filter,
                         stat=os.lstat, listdir=os.scandir)  # fmt: skip
        self._pause = 0.0
        take = getattr(self, "_take_snapshot", None)
        if take is not None:  # watchdog's snapshot hook: time each rescan

            def timed():
                started = time.perf_counter()
                try:
                    return take()
                finally:
                    self._pause = self.POLL_PACE * (time.perf_counter() - started)

            self._take_snapshot = timed

    def queue_events(self, timeout: float) -> None:
        super().queue_events(max(timeout, self._pause))


def _is_inotify(observer: BaseObserver) -> bool:
    return type(observer).__name__ == "InotifyObserver"


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
