"""CSV export of search results: properly quoted UTF-8 that is safe to open in a spreadsheet.

A text cell starting with = + - @ (or a tab / carriage return) could run as a formula in
Excel, LibreOffice or Google Sheets; such cells get a leading apostrophe, which spreadsheets
display as text and `unneutralise` removes again.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from visualfinder.search import SearchResult

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


def result_row(result: SearchResult) -> list[object]:
    r = result.record
    values = [
        result.rank, round(result.score, 6), round(result.distance, 6), r.path, r.file_name, r.title or "",
        ", ".join(r.tags), r.sku or "", r.url or "", "" if r.price is None else r.price,
        r.width or "", r.height or "", r.description or "",
    ]  # fmt: skip
    return [neutralise(v) for v in values]


def write_results_csv(
    results: Sequence[SearchResult], dest: str | os.PathLike, *, excel: bool = False
) -> Path:
    """Write results to `dest` atomically; `excel` adds a UTF-8 BOM so Excel detects the encoding."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8-sig" if excel else "utf-8", newline="") as fh:
            write_rows(fh, results)
        os.replace(tmp, dest)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)  # a full disk keeps no half-written file
        except OSError:
            pass
        raise
    return dest


def write_rows(fh, results: Iterable[SearchResult]) -> None:
    writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for result in results:
        writer.writerow(result_row(result))
