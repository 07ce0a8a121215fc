"""CSV export: proper quoting, UTF-8, hostile names round-trip, no formula injection."""

from __future__ import annotations

import csv

import pytest
from imagegen import write_image
from searching import search_image

from visualfinder.products.export import COLUMNS, neutralise, unneutralise

HOSTILE_NAMES = [
    '=HYPERLINK("evil.example","x").jpg',
    "+1+2.jpg",
    "-3-4.jpg",
    "@SUM(A1).jpg",
    'comma, and "quotes".jpg',
    "new\nline.jpg",
    "ünïcødé 製品 🪑.jpg",
    "semi;colon\ttab.jpg",
]


@pytest.mark.parametrize("excel", [False, True])
def test_csv_round_trips_hostile_file_names_and_defuses_formulas(library, tmp_path, excel):
    root = tmp_path / "catalog"
    paths = [write_image(root / name, seed) for seed, name in enumerate(HOSTILE_NAMES)]
    library.index([root])
    results = search_image(library, paths[0], k=len(paths))
    out = library.export_csv(results, tmp_path / "out.csv", excel=excel)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == excel
    with open(out, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == COLUMNS
    body = [dict(zip(COLUMNS, row)) for row in rows[1:]]
    assert len(body) == len(paths)
    assert sorted(r["path"] for r in body) == sorted(map(str, paths))  # absolute paths are exact
    for row in body:
        name = row["file_name"]
        assert not name.startswith(("=", "+", "-", "@")), name
        assert unneutralise(name) in HOSTILE_NAMES
    assert [int(r["rank"]) for r in body] == list(range(1, len(paths) + 1))
    assert float(body[0]["score"]) == pytest.approx(1.0, abs=1e-3)


def test_neutralise_only_touches_dangerous_text():
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("\t=x") == "'\t=x"
    assert neutralise("chair") == "chair"
    assert neutralise(-0.5) == -0.5
    assert unneutralise(neutralise("-sale")) == "-sale"
    assert unneutralise("'quoted") == "'quoted"
