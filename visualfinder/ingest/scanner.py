"""Walk catalog folders and diff them against the catalog by stat (size + mtime_ns) alone.

An unchanged file is never opened. New and changed files go to the pipeline, which hashes
their content so a moved or renamed file keeps its embedding.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from visualfinder.catalog.store import Catalog, Folder, StatRow, path_to_db, subtree_bounds
from visualfinder.ingest.imaging import has_image_extension, is_candidate_name, is_ignored_name
from visualfinder.ingest.retry import due_for_retry
from visualfinder.jobs import CancelToken
from visualfinder.paths import LIBRARY_MARKER, is_within
from visualfinder.products.importer import IMAGE_SIDECAR_SUFFIX, TABLE_SIDECARS, is_sidecar_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileStat:
    """A candidate image file on disk. `problem` is set when it cannot be read at all;
    `problem_transient` when that may pass (a stat error) rather than not (a pipe)."""

    path: str
    size: int
    mtime_ns: int
    folder_id: int
    problem: str | None = None
    problem_transient: bool = False
    ctime_ns: int = 0  # a changed ctime makes a transient skip due (see ingest/retry.py)


@dataclass
class ScanPlan:
    """What indexing has to do to bring the catalog in line with the disk."""

    new: list[FileStat] = field(default_factory=list)
    changed: list[tuple[FileStat, StatRow]] = field(default_factory=list)
    missing: list[StatRow] = field(default_factory=list)
    unchanged: int = 0
    folder_errors: list[tuple[str, str]] = field(default_factory=list)
    scanned_roots: list[str] = field(default_factory=list)
    # For a new file whose content the catalog already has: may that image move to it? (The
    # watcher saw a file appear but not where it came from, e.g. from another watched folder.)
    adopt: Callable[[StatRow], bool] | None = None
    # Files `accept` held back (still being written): neither indexed nor removed.
    deferred: list[str] = field(default_factory=list)
    # Metadata sidecar files seen on the way, as (path, size, mtime_ns): see products.importer.
    sidecars: list[tuple[str, int, int]] = field(default_factory=list)
    # Try every skipped file again, whatever its kind (`index --retry-skipped`).
    retry_skipped: bool = False
    # The wall clock a transient skip's next try is compared with.
    now: float = field(default_factory=time.time)

    @property
    def work(self) -> int:
        return len(self.new) + len(self.changed)


def scan(
    catalog: Catalog,
    roots: list[Folder],
    model_key: str,
    cancel: CancelToken | None = None,
    on_file: Callable[[int], None] | None = None,
    retry_skipped: bool = False,
) -> ScanPlan:
    """Diff the given catalog folders against the disk.

    A root that cannot be read (missing, unreadable, or an empty mount point of an unmounted
    drive) is reported in `folder_errors` and its catalogued images are left alone: only an
    explicit folder removal forgets them. A skipped file is tried again when it changed, when
    its transient failure is due (see ingest/retry.py), or always with `retry_skipped`.
    """
    plan = ScanPlan(retry_skipped=retry_skipped)
    folder_ids = {f.path: f.id for f in catalog.folders()}
    counter = _Counter(on_file)
    for root in _outermost(roots):
        if cancel is not None:
            cancel.raise_if_cancelled()
        problem = root_problem(catalog, root.path)
        if problem is not None:
            plan.folder_errors.append((root.path, problem))
            log.warning("%s: %s", root.path, problem)
            continue
        plan.scanned_roots.append(root.path)
        _diff_tree(plan, catalog, root.path, root.id, folder_ids, model_key, None, cancel, counter)
    return plan


def scan_paths(
    catalog: Catalog,
    paths: Iterable[str],
    model_key: str,
    accept: Callable[[FileStat], bool] | None = None,
    cancel: CancelToken | None = None,
    on_file: Callable[[int], None] | None = None,
    retry_skipped: bool = False,
) -> ScanPlan:
    """Diff just the given paths (files or folders, present or gone) against the catalog.

    The watcher's scan: the same stat diff as `scan`, for what its events named. A folder
    is walked; a path that is gone takes every catalogued image below it along. Paths outside
    the catalog folders, or in hidden or temporary folders, are ignored; paths whose catalog
    folder is unavailable (an unmounted drive) are reported and left alone, as `scan` does.
    `accept` may hold back a new or changed file (one still being written): it is then
    neither indexed nor removed. A new file whose content belongs to a catalogued image whose
    file has vanished takes that image over (`plan.adopt`), so a move keeps its id even when
    only its destination was named.
    """
    plan = ScanPlan(retry_skipped=retry_skipped)
    folders = catalog.folders()
    folder_ids = {f.path: f.id for f in folders}
    outer = _outermost(folders)
    problems: dict[tuple[str, bool], str | None] = {}
    sidecar_roots: dict[str, str] = {}  # image path -> its root, for the sidecars it may have
    counter = _Counter(on_file)
    for path in _topmost(os.path.abspath(p) for p in paths):
        if cancel is not None:
            cancel.raise_if_cancelled()
        root = next((f for f in outer if is_within(path, f.path)), None)
        if root is None or _hidden_below(path, root.path):
            continue
        # Events inside a folder prove it is mounted: it may be emptied. A whole-folder diff may not.
        key = (root.path, path != root.path)
        if key not in problems:
            problems[key] = root_problem(catalog, root.path, empty_ok=key[1])
            if problems[key] is not None:
                plan.folder_errors.append((root.path, problems[key]))
        if problems[key] is not None:
            continue
        folder_id = _deepest_folder_id(path, folders)
        if os.path.isdir(path):
            row = catalog.stat_row(path, model_key)
            if row is not None:  # a file replaced by a folder of the same name
                plan.missing.append(row)
            _diff_tree(plan, catalog, path, folder_id, folder_ids, model_key, accept, cancel, counter,
                       ancestors_of=root.path)  # fmt: skip
            continue
        found = stat_file(path, folder_id)
        row = catalog.stat_row(path, model_key)
        if found is None:
            if row is not None:
                plan.missing.append(row)
            if is_sidecar_name(os.path.basename(path)):
                _add_sidecar(plan, path)
        else:
            counter.tick()
            _classify(plan, found, row, model_key, accept)
            sidecar_roots[path] = root.path
        plan.missing.extend(catalog.stat_rows_under(path, model_key).values())  # a folder that was removed
    # A new or changed image also gets the metadata of sidecars that were there before it.
    for image in [f.path for f in plan.new] + [f.path for f, _ in plan.changed]:
        if image in sidecar_roots:
            _add_image_sidecars(plan, image, sidecar_roots[image])
    plan.adopt = _VanishedFile(catalog, outer, problems)
    return plan


def _add_sidecar(plan: ScanPlan, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and not any(p == path for p, _, _ in plan.sidecars):
        plan.sidecars.append((path, st.st_size, st.st_mtime_ns))


def _add_image_sidecars(plan: ScanPlan, image: str, root: str) -> None:
    """`photo.jpg.json` next to an image and the product tables of its folders up to `root`."""
    candidates = [image + IMAGE_SIDECAR_SUFFIX]
    folder = os.path.dirname(image)
    while is_within(folder, root):
        candidates += [os.path.join(folder, name) for name in TABLE_SIDECARS]
        if folder == root:
            break
        folder = os.path.dirname(folder)
    for candidate in candidates:
        if os.path.isfile(candidate):
            _add_sidecar(plan, candidate)


def root_problem(catalog: Catalog, path: str, empty_ok: bool = False) -> str | None:
    """Why a catalog folder cannot be diffed now (its images are then kept), or None.

    An empty folder that has catalogued images is taken for the mount point an unmounted
    drive left behind, unless `empty_ok` (the caller knows it is the same folder).
    """
    try:
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
    except (FileNotFoundError, NotADirectoryError):
        return FOLDER_NOT_FOUND
    except OSError as exc:
        return f"cannot read the folder: {_os_reason(exc)}"
    if empty and not empty_ok:
        low, high = subtree_bounds(path)
        if catalog.count_where("i.path >= ? AND i.path < ?", (low, high)):
            # The mount point an unmounted drive leaves behind; a folder emptied on purpose
            # is forgotten with remove-folder.
            return "folder is empty although images were catalogued there (an unmounted drive?)"
    return None


FOLDER_NOT_FOUND = "folder not found (deleted, renamed or on an unmounted drive)"


class _Counter:
    """Reports the number of files seen every 1000 files."""

    def __init__(self, on_file: Callable[[int], None] | None):
        self.on_file = on_file
        self.seen = 0

    def tick(self) -> None:
        self.seen += 1
        if self.on_file is not None and self.seen % 1000 == 0:
            self.on_file(self.seen)


def _diff_tree(
    plan: ScanPlan,
    catalog: Catalog,
    folder: str,
    folder_id: int,
    folder_ids: dict[str, int],
    model_key: str,
    accept: Callable[[FileStat], bool] | None,
    cancel: CancelToken | None,
    counter: _Counter,
    ancestors_of: str | None = None,
) -> None:
    """Walk `folder` and diff it against the catalogued images below it."""
    known = catalog.stat_rows_under(folder, model_key)
    errors: list[tuple[str, str]] = []
    seen = _ancestor_ids(folder, ancestors_of) if ancestors_of else None
    for found in walk_folder(folder, folder_id, folder_ids, errors, cancel, plan.sidecars, seen):
        counter.tick()
        _classify(plan, found, known.pop(found.path, None), model_key, accept)
    plan.folder_errors.extend(errors)
    # Images below a folder we could not read are kept: unreadable is not deleted.
    unreadable = [subtree_bounds(d) for d, reason in errors if reason != "not found"]
    for row in known.values():
        if not any(low <= path_to_db(row.path) < high for low, high in unreadable):
            plan.missing.append(row)


def _classify(
    plan: ScanPlan,
    found: FileStat,
    row: StatRow | None,
    model_key: str,
    accept: Callable[[FileStat], bool] | None,
) -> None:
    """Sort one file on disk into new / changed / unchanged against its catalog row."""
    if row is None:
        if accept is None or accept(found):
            plan.new.append(found)
        else:
            plan.deferred.append(found.path)
    elif row.size != found.size or row.mtime_ns != found.mtime_ns or row.folder_id != found.folder_id:
        if accept is None or accept(found):
            plan.changed.append((found, row))
        else:
            plan.deferred.append(found.path)
    elif row.status == "ok" and not (row.has_embedding and row.model_key == model_key):
        plan.changed.append((found, row))  # embedded by another model: embed again
    elif row.status == "error" and (plan.retry_skipped or due_for_retry(row, found.ctime_ns, plan.now)):
        plan.changed.append((found, row))  # a skip whose cause may be gone: try again
    else:
        plan.unchanged += 1


class _VanishedFile:
    """Adoption rule of a watcher scan: a catalogued image may move to a new file with its
    content when its own file is gone from a folder that is available (not unmounted)."""

    def __init__(self, catalog: Catalog, outer: list[Folder], problems: dict[tuple[str, bool], str | None]):
        self.catalog, self.outer, self.problems = catalog, outer, problems

    def __call__(self, row: StatRow) -> bool:
        root = next((f for f in self.outer if is_within(row.path, f.path)), None)
        if root is None or os.path.lexists(row.path):
            return False
        key = (root.path, True)
        if key not in self.problems:
            self.problems[key] = root_problem(self.catalog, root.path, empty_ok=True)
        return self.problems[key] is None


def _topmost(paths: Iterable[str]) -> list[str]:
    """Unique paths, without those below another given path (its diff covers them)."""
    given = set(paths)
    kept = []
    for path in sorted(given):
        parent, child = os.path.dirname(path), path
        while parent != child and parent not in given:  # climb to the root: depth, not count
            parent, child = os.path.dirname(parent), parent
        if parent == child:
            kept.append(path)
    return kept


def _hidden_below(path: str, root: str) -> bool:
    """Whether a name between `root` and `path` (included) is hidden or temporary: never catalogued."""
    relative = os.path.relpath(path, root)
    return relative != os.curdir and any(is_ignored_name(part) for part in relative.split(os.sep))


def _ancestor_ids(folder: str, root: str) -> set[tuple[int, int]]:
    """Device and inode of the folders above `folder` up to `root`: a symlink back to one of
    them is a loop the walk must not enter."""
    ids = set()
    current = os.path.dirname(folder)
    while is_within(current, root):
        try:
            st = os.stat(current)
            ids.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        if current == root:
            break
        current = os.path.dirname(current)
    return ids


def _deepest_folder_id(path: str, folders: list[Folder]) -> int:
    best = max((f for f in folders if is_within(path, f.path)), key=lambda f: len(f.path))
    return best.id


def walk_folder(
    root: str,
    root_folder_id: int,
    folder_ids: dict[str, int],
    errors: list[tuple[str, str]],
    cancel: CancelToken | None = None,
    sidecars: list[tuple[str, int, int]] | None = None,
    visited: set[tuple[int, int]] | None = None,
) -> Iterator[FileStat]:
    """Yield candidate image files below `root`, following symlinks without looping.

    `folder_ids` maps registered folder paths to ids, so a file gets the deepest folder
    that contains it. Unreadable subfolders are reported in `errors` and skipped. Metadata
    sidecar files are collected into `sidecars` when it is given. `visited` holds (device,
    inode) of folders not to enter (the walk adds to it).
    """
    visited = set() if visited is None else visited
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
        if any(entry.name == LIBRARY_MARKER for entry in entries):
            continue  # a library's data folder: its thumbnails are not catalog images
        for entry in entries:
            name = entry.name
            if is_ignored_name(name):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                stack.append((entry.path, folder_ids.get(entry.path, folder_id)))
                continue
            if not has_image_extension(name):  # (not is_candidate_name: the name is not ignored)
                if sidecars is not None and is_sidecar_name(name):
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
        return FileStat(entry.path, 0, 0, folder_id, _os_reason(exc), problem_transient=_may_pass(exc))
    if not stat.S_ISREG(st.st_mode):
        return FileStat(
            entry.path, 0, st.st_mtime_ns, folder_id, "not a regular file (device, pipe or socket)"
        )
    return FileStat(entry.path, st.st_size, st.st_mtime_ns, folder_id, ctime_ns=st.st_ctime_ns)


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
        return FileStat(path, 0, 0, folder_id, _os_reason(exc), problem_transient=_may_pass(exc))
    if stat.S_ISDIR(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode):
        return FileStat(path, 0, st.st_mtime_ns, folder_id, "not a regular file (device, pipe or socket)")
    return FileStat(path, st.st_size, st.st_mtime_ns, folder_id, ctime_ns=st.st_ctime_ns)


def _outermost(roots: list[Folder]) -> list[Folder]:
    """Drop roots nested in another root of the same scan (the outer walk covers them)."""
    ordered = sorted(roots, key=lambda f: len(f.path))
    kept: list[Folder] = []
    for folder in ordered:
        if not any(is_within(folder.path, outer.path) for outer in kept):
            kept.append(folder)
    return kept


def _may_pass(exc: OSError) -> bool:
    """A stat error that may pass (permission, I/O, a stale handle); a symlink loop will not."""
    return exc.errno != 40  # ELOOP


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if exc.errno == 40:  # ELOOP
        return "too many levels of symbolic links"
    return exc.strerror or str(exc)
