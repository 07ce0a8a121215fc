"""Importing product metadata: rows matched to catalog images, a report of what did not match,
and sidecar files (`photo.jpg.json`, `products.csv` in a catalog folder) applied by indexing.

A row names its image by absolute path, by a path relative to the metadata file's folder (or
a catalog folder), or by file name; without an image column, an image whose file name (minus
extension) equals the row's sku is matched, which suits catalogs named by article number.
A `ColumnMapping` says instead what each column is and how rows match (by path, file name or
sku); the CLI's `import-metadata --column/--match` and the app's import dialog both pass one.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field

from visualfinder.catalog.products import (
    applied_sidecars,
    image_paths,
    images_without_metadata,
    record_sidecar,
    write_products,
)
from visualfinder.catalog.store import Catalog
from visualfinder.errors import Cancelled
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.paths import normalise
from visualfinder.products.fields import ColumnMapping, MetadataError, MetadataRow, read_metadata_file

log = logging.getLogger(__name__)

TABLE_SIDECARS = ("products.csv", "products.json", "products.jsonl")
IMAGE_SIDECAR_SUFFIX = ".json"  # photo.jpg.json next to photo.jpg


@dataclass
class ImportReport:
    """What an import did; `unmatched`, `ambiguous` and `problems` say what to fix in the file."""

    source: str
    rows: int = 0
    matched_rows: int = 0
    matched: list[tuple[int, str, list[str]]] = field(default_factory=list)  # (line, reference, paths)
    images_updated: int = 0
    unmatched: list[tuple[int, str]] = field(default_factory=list)  # (line, reference)
    ambiguous: list[tuple[int, str, int]] = field(default_factory=list)  # (line, reference, images)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)
    without_metadata: int = 0
    without_metadata_sample: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict:
        return {
            "source": self.source, "rows": self.rows, "matched_rows": self.matched_rows,
            "images_updated": self.images_updated, "dry_run": self.dry_run,
            "matched": [{"line": n, "image": ref, "paths": paths} for n, ref, paths in self.matched],
            "unmatched": [{"line": n, "image": ref} for n, ref in self.unmatched],
            "ambiguous": [{"line": n, "image": ref, "matches": c} for n, ref, c in self.ambiguous],
            "problems": [{"line": n, "problem": p} for n, p in self.problems],
            "images_without_metadata": self.without_metadata,
            "images_without_metadata_sample": self.without_metadata_sample,
        }  # fmt: skip


class ImageMatcher:
    """Finds catalog images for the references in metadata rows."""

    def __init__(self, catalog: Catalog, base_dirs: list[str]):
        self.catalog = catalog
        self.base_dirs = [os.path.abspath(d) for d in base_dirs]
        self._by_name: dict[str, list[tuple[int, str]]] | None = None

    def match(self, row: MetadataRow, match_by: str = "auto") -> list[int]:
        """Image ids for a row: [] for none; several only for an sku shared by several files.

        `match_by` (fields.MATCH_MODES): "path" reads the image column as a path (then as a file
        name), "name" as a file name only, "sku" looks for files named like the sku; "auto" uses
        the image column when the row has one, else the sku.
        Raises _Ambiguous when a file reference fits several images.
        """
        if match_by == "name":
            return self._by_file_name(row.image) if row.image else []
        if row.image and match_by in ("auto", "path"):
            return self._by_reference(row.image)
        sku = row.fields.get("sku")
        if sku and match_by in ("auto", "sku"):
            return [image_id for image_id, _ in self._names().get(_stem_key(str(sku)), [])]
        return []

    def _by_file_name(self, ref: str) -> list[int]:
        name = os.path.basename(ref.strip().replace("\\", "/"))
        hits = {image_id for image_id, _ in self._names().get(_name_key(name), [])}
        if len(hits) > 1:
            raise _Ambiguous(len(hits))
        return sorted(hits)

    def _by_reference(self, ref: str) -> list[int]:
        expanded = os.path.expanduser(ref.strip())
        if os.path.isabs(expanded):
            found = self.catalog.id_for_path(os.path.normpath(expanded))
            return [found] if found is not None else []
        relative = os.path.normpath(expanded.replace("\\", "/"))
        hits = set()
        for base in self.base_dirs:
            found = self.catalog.id_for_path(os.path.join(base, relative))
            if found is not None:
                hits.add(found)
                if base == self.base_dirs[0]:  # the metadata file's own folder wins
                    return [found]
        if not hits:  # by file name, and by the trailing part of the path when one is given
            suffix = os.sep + relative
            hits = {
                image_id
                for image_id, path in self._names().get(_name_key(os.path.basename(relative)), [])
                if path.endswith(suffix) or os.sep not in relative
            }
        if len(hits) > 1:
            raise _Ambiguous(len(hits))
        return sorted(hits)

    def _names(self) -> dict[str, list[tuple[int, str]]]:
        """File name and stem (lower-case) -> images; built once, on the first need."""
        if self._by_name is None:
            index: dict[str, list[tuple[int, str]]] = defaultdict(list)
            for image_id, path in image_paths(self.catalog):
                name = os.path.basename(path)
                index[_name_key(name)].append((image_id, path))
                index[_stem_key(os.path.splitext(name)[0])].append((image_id, path))
            self._by_name = dict(index)
        return self._by_name


class _Ambiguous(Exception):
    def __init__(self, count: int):
        self.count = count


def import_rows(
    catalog: Catalog,
    rows: list[MetadataRow],
    source: str,
    base_dirs: list[str],
    *,
    replace_tags: bool = False,
    dry_run: bool = False,
    only_ids: set[int] | None = None,
    match_by: str = "auto",
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Match rows to images and write them in one transaction (nothing with `dry_run`).

    Cancelling stops before anything is written."""
    report = ImportReport(source, rows=len(rows), dry_run=dry_run)
    matcher = ImageMatcher(catalog, base_dirs)
    planned: list[tuple[MetadataRow, list[int]]] = []
    matched: list[tuple[int, str, list[int]]] = []
    key = {"sku": "sku", "auto": None}.get(match_by, "image")
    for number, row in enumerate(rows, start=1):
        if number % 500 == 0:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("the import was stopped before anything was written")
            progress(Progress("matching rows", number, len(rows)))
        report.problems += [(row.line, p) for p in row.problems]
        has_image, has_sku = row.image is not None, bool(row.fields.get("sku"))
        if not (has_image or has_sku) or (key == "image" and not has_image) or (key == "sku" and not has_sku):
            if not row.problems:
                what = {"image": "no image path or file name", "sku": "no sku"}.get(
                    key or "", "no image column and no sku"
                )
                report.problems.append((row.line, f"{what} to match an image by"))
            continue
        reference = row.image if row.image and match_by != "sku" else f"sku {row.fields.get('sku')}"
        try:
            ids = matcher.match(row, match_by)
        except _Ambiguous as exc:
            report.ambiguous.append((row.line, row.image or "", exc.count))
            continue
        if not ids:
            report.unmatched.append((row.line, reference))
            continue
        report.matched_rows += 1
        matched.append((row.line, reference, ids))
        if only_ids is not None:
            ids = [i for i in ids if i in only_ids]
        if ids:
            planned.append((row, ids))
    progress(Progress("matching rows", len(rows), len(rows)))
    report.images_updated = len({i for _, ids in planned for i in ids})
    if cancel is not None and cancel.cancelled:
        raise Cancelled("the import was stopped before anything was written")
    if planned and not dry_run:
        with catalog.transaction() as conn:
            for row, ids in planned:
                write_products(catalog, conn, ids, row.fields, row.extra, row.tags, replace_tags=replace_tags)
    if matched:
        records = catalog.records(sorted({i for _, _, ids in matched for i in ids}))
        report.matched = [
            (line, ref, [records[i].path for i in ids if i in records]) for line, ref, ids in matched
        ]
    report.without_metadata, report.without_metadata_sample = images_without_metadata(catalog)
    return report


def import_file(
    catalog: Catalog,
    path: str | os.PathLike,
    *,
    base_dir: str | None = None,
    replace_tags: bool = False,
    dry_run: bool = False,
    mapping: ColumnMapping | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Import a CSV / JSON / JSON Lines file of product metadata (by `mapping`, or by its headers)."""
    full = normalise(path)
    rows = read_metadata_file(full, mapping)
    bases = [base_dir or os.path.dirname(full), *(f.path for f in catalog.folders())]
    return import_rows(
        catalog, rows, full, bases, replace_tags=replace_tags, dry_run=dry_run,
        match_by=mapping.match_by if mapping else "auto", progress=progress, cancel=cancel,
    )  # fmt: skip


# --- sidecars ------------------------------------------------------------------------------


def is_sidecar_name(name: str) -> bool:
    lower = name.lower()
    if lower in TABLE_SIDECARS:
        return True
    if lower.endswith(IMAGE_SIDECAR_SUFFIX):
        from visualfinder.ingest.imaging import is_candidate_name

        return is_candidate_name(name[: -len(IMAGE_SIDECAR_SUFFIX)])
    return False


@dataclass
class SidecarReport:
    applied: list[str] = field(default_factory=list)
    images_updated: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def apply_sidecars(
    catalog: Catalog, sidecars: list[tuple[str, int, int]], new_paths: set[str] | None = None
) -> SidecarReport:
    """Apply sidecar files, given as (path, size, mtime_ns): a new or changed one to every image
    it names; an unchanged one only to images in `new_paths` (added since it was applied)."""
    report = SidecarReport()
    known = applied_sidecars(catalog, [p for p, _, _ in sidecars])
    new_paths = new_paths or set()
    for path, size, mtime_ns in sorted(sidecars):
        changed = known.get(path) != (size, mtime_ns)
        folder = os.path.dirname(path)
        if not changed:
            fresh = {p for p in new_paths if p.startswith(folder + os.sep)}
            if os.path.basename(path).lower() not in TABLE_SIDECARS:
                fresh &= {path[: -len(IMAGE_SIDECAR_SUFFIX)]}
            if not fresh:
                continue
            only = {i for i in (catalog.id_for_path(p) for p in fresh) if i is not None}
        else:
            only = None
        try:
            rows = _sidecar_rows(path)
        except MetadataError as exc:
            report.problems.append((path, str(exc).removeprefix(path + ": ")))
            log.warning("metadata sidecar %s: %s", path, exc)
            continue
        result = import_rows(catalog, rows, path, [folder], only_ids=only)
        report.images_updated += result.images_updated
        report.applied.append(path)
        for line, ref in result.unmatched:
            log.info("%s line %d: no image %s in the library", path, line, ref)
        record_sidecar(catalog, path, size, mtime_ns)
    return report


def find_sidecars(folders: list[str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every sidecar file below `folders` (hidden folders skipped)."""
    found = []
    seen: set[tuple[int, int]] = set()
    stack = list(folders)
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir():
                        stack.append(entry.path)
                    elif is_sidecar_name(entry.name):
                        est = entry.stat()
                        found.append((entry.path, est.st_size, est.st_mtime_ns))
        except OSError as exc:
            log.debug("cannot look for sidecars in %s: %s", directory, exc)
    return found


def _sidecar_rows(path: str) -> list[MetadataRow]:
    if os.path.basename(path).lower() in TABLE_SIDECARS:
        return read_metadata_file(path)
    rows = read_metadata_file(path)  # photo.jpg.json: one object describing photo.jpg
    image = os.path.basename(path)[: -len(IMAGE_SIDECAR_SUFFIX)]
    if len(rows) != 1:
        raise MetadataError(f"{path}: expected one JSON object describing {image}")
    row = rows[0]
    if row.image is None:
        row.image = image
    return [row]


def _name_key(name: str) -> str:
    return "n:" + name.lower()


def _stem_key(stem: str) -> str:
    return "s:" + stem.strip().lower()
