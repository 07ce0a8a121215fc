"""CSV export of search results: properly quoted UTF-8 that is safe to open in a spreadsheet.

A text cell starting with = + - @ (or a tab / carriage return) could run as a formula in
Excel, LibreOffice or Google Sheets; such cells get a leading apostrophe, which spreadsheets
display as text and `unneutralise` removes again. Extra product columns kept by a metadata
import follow the fixed columns, one column each.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

from visualfinder.search.planner import SearchResult

COLUMNS = (
    "rank", "score", "distance", "path", "file_name", "title", "tags", "sku", "url", "price",
    "width", "height", "description",
)  # fmt: skip
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """Defuse a text cell a spreadsheet would run as a formula; numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def unneutralise(cell: str) -> str:
    """Inverse of neutralise for a cell read back from our CSV."""
    if cell.startswith("'") and cell[1:].startswith(_FORMULA_STARTS):
        return cell[1:]
    return cell


def result_row(result: SearchResult, extra_columns: Sequence[str] = ()) -> list[object]:
    r = result.record
    values = [
        result.rank, _number(result.score), _number(result.distance), r.path, r.file_name, r.title or "",
        ", ".join(r.tags), r.sku or "", r.url or "", "" if r.price is None else r.price,
        r.width or "", r.height or "", r.description or "",
    ]  # fmt: skip
    values += [_cell(r.extra.get(name)) for name in extra_columns]
    return [neutralise(v) for v in values]


def extra_columns(results: Iterable[SearchResult]) -> list[str]:
    """Extra metadata keys present in the results, in first-seen order (none clash with COLUMNS)."""
    seen: dict[str, None] = {}
    for result in results:
        for key in result.record.extra:
            if key not in COLUMNS:
                seen.setdefault(key, None)
    return list(seen)


def _number(value: float) -> object:
    return "" if math.isnan(value) else round(value, 6)


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def write_results_csv(
    results: Sequence[SearchResult], dest: str | os.PathLike, *, excel: bool = False
) -> Path:
    """Write results to `dest` atomically; `excel` adds a UTF-8 BOM so Excel detects the encoding."""
    return write_atomically(dest, excel, lambda fh: write_rows(fh, results))


def write_atomically(dest: str | os.PathLike, excel: bool, write: Callable[[TextIO], None]) -> Path:
    """Write a CSV file through `.NAME.tmp` and a rename: `dest` is whole or untouched, and a
    failure (a full disk, an error while filling) leaves no temporary file behind."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8-sig" if excel else "utf-8", newline="") as fh:
            write(fh)
        os.replace(tmp, dest)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself may be gone or read-only: nothing more to clean
            pass
        raise
    return dest


def write_rows(fh, results: Iterable[SearchResult]) -> None:
    results = list(results)
    extras = extra_columns(results)
    writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow([*COLUMNS, *(neutralise(name) for name in extras)])
    for result in results:
        writer.writerow(result_row(result, extras))


DUPLICATE_COLUMNS = (
    "group",
    "tier",
    "position",
    "keep",
    "path",
    "width",
    "height",
    "bytes",
    "similarity",
    "sku",
    "title",
)


def write_duplicates_csv(groups: Sequence, dest: str | os.PathLike, *, excel: bool = False) -> Path:
    """One row per file of each duplicate group; `keep` marks the copy suggested to keep."""

    def write(fh: TextIO) -> None:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(DUPLICATE_COLUMNS)
        for number, group in enumerate(groups, start=1):
            keep = group.suggested
            for position, (record, score) in enumerate(zip(group.members, group.similarity, strict=True)):
                values = [number, group.tier, position + 1, "keep" if position == keep else "", record.path,
                          record.width or "", record.height or "", record.size, round(score, 6),
                          record.sku or "", record.title or ""]  # fmt: skip
                writer.writerow([neutralise(v) for v in values])

    return write_atomically(dest, excel, write)


BATCH_COLUMNS = ("photo", "rank", "sku", "title", "score", "path")


def write_batch_csv(matches: Sequence, dest: str | os.PathLike, *, excel: bool = False) -> Path:
    """One row per match of each photo of a batch match (`library.batch.PhotoMatches`); a photo
    that could not be read gets one row with its reason in `title` and no rank."""

    def write(fh: TextIO) -> None:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(BATCH_COLUMNS)
        for match in matches:
            if match.error:
                writer.writerow([neutralise(v) for v in (match.photo, "", "", match.error, "", "")])
                continue
            for result in match.results:
                r = result.record
                values = [match.photo, result.rank, r.sku or "", r.title or "", _number(result.score), r.path]
                writer.writerow([neutralise(v) for v in values])

    return write_atomically(dest, excel, write)


IMPORT_REPORT_COLUMNS = ("line", "status", "reference", "images", "detail")


def write_import_report_csv(report, dest: str | os.PathLike, *, excel: bool = False) -> Path:
    """One row per sheet row an import looked at: matched (with the image paths), unmatched,
    ambiguous, or with a problem; in the sheet's line order."""
    rows: list[tuple[int, str, str, str, str]] = []
    rows += [(line, "matched", ref, " | ".join(paths), "") for line, ref, paths in report.matched]
    rows += [(line, "unmatched", ref, "", "no image in the library") for line, ref in report.unmatched]
    rows += [(line, "ambiguous", ref, "", f"matches {count} images; give a longer path")
             for line, ref, count in report.ambiguous]  # fmt: skip
    rows += [(line, "problem", "", "", problem) for line, problem in report.problems]
    rows.sort(key=lambda row: row[0])

    def write(fh) -> None:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(IMPORT_REPORT_COLUMNS)
        for row in rows:
            writer.writerow([neutralise(v) for v in row])

    return write_atomically(dest, excel, write)
