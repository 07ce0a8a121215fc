"""Walk catalog folders and diff them against the catalog by stat (size + mtime_ns) alone.

An unchanged file is never opened. New and changed files go to the pipeline, which hashes
their content so a moved or renamed file keeps its embedding.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from visualfinder.catalog import Catalog, Folder, StatRow
from visualfinder.imaging import is_candidate_name, is_ignored_name
from visualfinder.jobs import CancelToken
from visualfinder.metadata_import import is_sidecar_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileStat:
    """A candidate image file on disk. `problem` is set when it cannot be read at all."""

    path: str
    size: int
    mtime_ns: int
    folder_id: int
    problem: str | None = None


@dataclass
class ScanPlan:
    """What indexing has to do to bring the catalog in line with the disk."""

    new: list[FileStat] = field(default_factory=list)
    changed: list[tuple[FileStat, StatRow]] = field(default_factory=list)
    missing: list[StatRow] = field(default_factory=list)
    unchanged: int = 0
    folder_errors: list[tuple[str, str]] = field(default_factory=list)
    scanned_roots: list[str] = field(default_factory=list)
    # Metadata sidecar files seen on the way, as (path, size, mtime_ns): see metadata_import.
    sidecars: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def work(self) -> int:
        return len(self.new) + len(self.changed)


def scan(
    catalog: Catalog,
    roots: list[Folder],
    model_key: str,
    cancel: CancelToken | None = None,
    on_file: Callable[[int], None] | None = None,
) -> ScanPlan:
    """Diff the given catalog folders against the disk.

    A root that does not exist (an unmounted drive) is reported in `folder_errors` and its
    catalogued images are left alone: only an explicit folder removal forgets them.
    """
    plan = ScanPlan()
    folder_ids = {f.path: f.id for f in catalog.folders()}
    seen = 0
    for root in _outermost(roots):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if not os.path.isdir(root.path):
            reason = "folder not found (deleted, renamed or on an unmounted drive)"
            plan.folder_errors.append((root.path, reason))
            log.warning("%s: %s", root.path, reason)
            continue
        plan.scanned_roots.append(root.path)
        known = catalog.stat_rows_under(root.path, model_key)
        for found in walk_folder(root.path, root.id, folder_ids, plan.folder_errors, cancel, plan.sidecars):
            seen += 1
            if on_file is not None and seen % 1000 == 0:
                on_file(seen)
            row = known.pop(found.path, None)
            if row is None:
                plan.new.append(found)
            elif row.size != found.size or row.mtime_ns != found.mtime_ns or row.folder_id != found.folder_id:
                plan.changed.append((found, row))
            elif row.status == "ok" and not (row.has_embedding and row.model_key == model_key):
                plan.changed.append((found, row))  # embedded by another model: embed again
            else:
                plan.unchanged += 1
        plan.missing.extend(known.values())
    return plan


def walk_folder(
    root: str,
    root_folder_id: int,
    folder_ids: dict[str, int],
    errors: list[tuple[str, str]],
    cancel: CancelToken | None = None,
    sidecars: list[tuple[str, int, int]] | None = None,
) -> Iterator[FileStat]:
    """Yield candidate image files below `root`, following symlinks without looping.

    `folder_ids` maps registered folder paths to ids, so a file gets the deepest folder
    that contains it. Unreadable subfolders are reported in `errors` and skipped. Metadata
    sidecar files are collected into `sidecars` when it is given.
    """
    visited: set[tuple[int, int]] = set()
    stack = [(root, root_folder_id)]
    while stack:
        if cancel is not None:
            cancel.raise_if_cancelled()
        directory, folder_id = stack.pop()
        try:
            st = os.stat(directory)
        except OSError as exc:
            errors.append((directory, _os_reason(exc)))
            continue
        if (st.st_dev, st.st_ino) in visited:
            continue  # symlink loop or a second link to a folder we already walked
        visited.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(directory) as entries:
                entries = list(entries)
        except OSError as exc:
            errors.append((directory, _os_reason(exc)))
            log.warning("cannot read folder %s: %s", directory, _os_reason(exc))
            continue
        for entry in entries:
            if is_ignored_name(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                stack.append((entry.path, folder_ids.get(entry.path, folder_id)))
                continue
            if not is_candidate_name(entry.name):
                if sidecars is not None and is_sidecar_name(entry.name):
                    try:
                        st = entry.stat()
                        sidecars.append((entry.path, st.st_size, st.st_mtime_ns))
                    except OSError:
                        pass
                continue
            yield _file_stat(entry, folder_id)


def _file_stat(entry: os.DirEntry, folder_id: int) -> FileStat:
    try:
        st = entry.stat()  # follows symlinks
    except FileNotFoundError:
        lst = entry.stat(follow_symlinks=False)
        return FileStat(entry.path, 0, lst.st_mtime_ns, folder_id, "broken symlink (target missing)")
    except OSError as exc:
        return FileStat(entry.path, 0, 0, folder_id, _os_reason(exc))
    if not stat.S_ISREG(st.st_mode):
        return FileStat(
            entry.path, 0, st.st_mtime_ns, folder_id, "not a regular file (device, pipe or socket)"
        )
    return FileStat(entry.path, st.st_size, st.st_mtime_ns, folder_id)


def stat_file(path: str, folder_id: int) -> FileStat | None:
    """Stat one path like the walker would (for the watcher); None when it is not a candidate."""
    name = os.path.basename(path)
    if not is_candidate_name(name):
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return FileStat(path, 0, os.lstat(path).st_mtime_ns, folder_id, "broken symlink (target missing)")
        return None
    except OSError as exc:
        return FileStat(path, 0, 0, folder_id, _os_reason(exc))
    if stat.S_ISDIR(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode):
        return FileStat(path, 0, st.st_mtime_ns, folder_id, "not a regular file (device, pipe or socket)")
    return FileStat(path, st.st_size, st.st_mtime_ns, folder_id)


def _outermost(roots: list[Folder]) -> list[Folder]:
    """Drop roots nested in another root of the same scan (the outer walk covers them)."""
    ordered = sorted(roots, key=lambda f: len(f.path))
    kept: list[Folder] = []
    for folder in ordered:
        if not any(_is_within(folder.path, outer.path) for outer in kept):
            kept.append(folder)
    return kept


def _is_within(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep) + os.sep
    return path == folder[:-1] or path.startswith(folder)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if exc.errno == 40:  # ELOOP
        return "too many levels of symbolic links"
    return exc.strerror or str(exc)
