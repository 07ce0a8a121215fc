"""Product sheets with an explicit column mapping: preview, roles, matching by path, name or sku,
the matched/unmatched report and its CSV; the same importer from the CLI (--column, --match)."""

from __future__ import annotations

import csv
import json

import pytest
from imagegen import make_catalog

from visualfinder.cli.main import main
from visualfinder.errors import Cancelled
from visualfinder.jobs import CancelToken
from visualfinder.products.fields import ColumnMapping, MetadataError, preview_sheet, suggest_mapping


@pytest.fixture
def shop(library, tmp_path):
    root = tmp_path / "catalog"
    chairs = make_catalog(root / "chairs", 3)
    lamps = make_catalog(root / "lamps", 2, start_seed=20, ext="png")
    library.index([root])
    return root, chairs, lamps


GERMAN_SHEET = (
    "Artikel;Bezeichnung;Bild;Farbe;Preis\n"
    "A-1;Eichenstuhl;product_0000.jpg;natur;129,50\n"
    "A-2;Nussbaumstuhl;product_0001.jpg;braun;99\n"
    "A-3;Geist;nirgends.jpg;;\n"
)


def test_a_preview_shows_the_first_rows_and_the_mapping_the_headers_suggest(tmp_path):
    sheet = tmp_path / "feed.csv"
    sheet.write_text(
        "File,Article Number,Name,Keywords,colour\n"
        + "".join(f"p{i}.jpg,S-{i},Chair {i},oak,red\n" for i in range(30)),
        encoding="utf-8",
    )
    preview = preview_sheet(sheet, limit=5)
    assert preview.columns == ["File", "Article Number", "Name", "Keywords", "colour"]
    assert preview.total == 30 and len(preview.rows) == 5
    assert preview.rows[0] == ["p0.jpg", "S-0", "Chair 0", "oak", "red"]
    assert preview.suggested.roles == {
        "File": "image", "Article Number": "sku", "Name": "title", "Keywords": "tags", "colour": "extra",
    }  # fmt: skip


def test_json_lines_preview_lists_every_key_and_nested_values_as_json(tmp_path):
    sheet = tmp_path / "feed.jsonl"
    sheet.write_text(
        json.dumps({"image": "a.jpg", "sku": "A"}) + "\n" + json.dumps({"sku": "B", "dims": {"w": 40}}) + "\n"
    )
    preview = preview_sheet(sheet)
    assert preview.format == "jsonl" and preview.columns == ["image", "sku", "dims"]
    assert preview.rows[1] == ["", "B", '{"w": 40}']


def test_a_sheet_with_unknown_headers_imports_through_an_explicit_mapping(library, shop, tmp_path):
    _, chairs, _ = shop
    sheet = tmp_path / "artikel.csv"
    sheet.write_text(GERMAN_SHEET, encoding="utf-8")
    with pytest.raises(MetadataError, match="must name the columns"):
        library.products.import_metadata(sheet)  # the headers alone say nothing

    mapping = ColumnMapping(
        {"Artikel": "sku", "Bezeichnung": "title", "Bild": "image", "Farbe": "extra", "Preis": "price"},
        match_by="name",
    )
    report = library.products.import_metadata(sheet, mapping=mapping)

    assert (report.rows, report.matched_rows, report.images_updated) == (3, 2, 2)
    assert report.unmatched == [(4, "nirgends.jpg")]
    assert report.matched == [
        (2, "product_0000.jpg", [str(chairs[0])]),
        (3, "product_0001.jpg", [str(chairs[1])]),
    ]
    first = library.record(chairs[0])
    assert (first.sku, first.title, first.price, first.extra) == (
        "A-1",
        "Eichenstuhl",
        129.5,
        {"Farbe": "natur"},
    )


def test_skipped_columns_are_not_stored_and_rows_match_by_sku(library, shop, tmp_path):
    _, chairs, lamps = shop
    sheet = tmp_path / "feed.jsonl"
    sheet.write_text(
        json.dumps({"code": "product_0002", "name": "Pine chair", "internal": "x", "colour": "white"})
        + "\n"
        + json.dumps({"code": "PRODUCT_0020", "name": "Brass lamp", "internal": "y"})
        + "\n"
        + json.dumps({"name": "No code"})
        + "\n"
    )
    mapping = ColumnMapping({"code": "sku", "name": "title", "internal": "skip", "colour": "extra"}, "sku")
    report = library.products.import_metadata(sheet, mapping=mapping)
    assert report.matched_rows == 2 and report.problems == [(3, "no sku to match an image by")]
    assert library.record(chairs[2]).extra == {"colour": "white"}
    assert (library.record(lamps[0]).title, library.record(lamps[0]).extra) == ("Brass lamp", {})


def test_matching_by_file_name_reports_a_name_shared_by_two_folders_as_ambiguous(library, tmp_path):
    root = tmp_path / "catalog"
    make_catalog(root / "a", 1)
    make_catalog(root / "b", 1)
    library.index([root])
    sheet = tmp_path / "feed.csv"
    sheet.write_text("photo,title\na/product_0000.jpg,First\n", encoding="utf-8")
    by_name = library.products.import_metadata(
        sheet, mapping=ColumnMapping({"photo": "image", "title": "title"}, "name")
    )
    assert by_name.ambiguous == [(2, "a/product_0000.jpg", 2)] and by_name.matched_rows == 0
    by_path = library.products.import_metadata(
        sheet, mapping=ColumnMapping({"photo": "image", "title": "title"}, "path")
    )
    assert by_path.matched_rows == 1  # the path tells the two apart


def test_a_mapping_that_cannot_match_is_refused_with_a_reason():
    with pytest.raises(MetadataError, match="needs a column marked as the image"):
        ColumnMapping({"sku": "sku"}, "path")
    with pytest.raises(MetadataError, match="needs a column marked as the sku"):
        ColumnMapping({"file": "image"}, "sku")
    with pytest.raises(MetadataError, match="only one column can be the title"):
        ColumnMapping({"a": "title", "b": "title"})
    with pytest.raises(MetadataError, match="unknown role"):
        ColumnMapping({"a": "colour"})
    assert suggest_mapping(["image", "path", ""]).roles == {"image": "image", "path": "skip", "": "skip"}


def test_the_report_csv_lists_every_row_in_line_order_and_is_written_atomically(library, shop, tmp_path):
    _, chairs, _ = shop
    sheet = tmp_path / "feed.csv"
    sheet.write_text(
        f"image,sku,price\n{chairs[0]},A,cheap\nghost.jpg,B,1\n,,\n{chairs[1].name},=HYPERLINK(1),2\n",
        encoding="utf-8",
    )
    report = library.products.import_metadata(sheet, dry_run=True)
    out = tmp_path / "report.csv"
    library.products.save_import_report(report, out)
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == ["line", "status", "reference", "images", "detail"]
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("2", "matched"), ("2", "problem"), ("3", "unmatched"), ("4", "problem"), ("5", "matched"),
    ]  # fmt: skip
    assert rows[1][3] == str(chairs[0]) and "cheap" in rows[2][4]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert library.record(chairs[0]).sku is None  # a dry run writes nothing


def test_a_cancelled_import_writes_nothing(library, shop, tmp_path):
    _, chairs, _ = shop
    sheet = tmp_path / "feed.csv"
    sheet.write_text(f"image,title\n{chairs[0]},Oak\n", encoding="utf-8")
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        library.products.import_metadata(sheet, cancel=cancel)
    assert library.record(chairs[0]).title is None


def test_the_cli_takes_the_same_mapping_and_writes_the_report(shop, tmp_path, capsys, library):
    _, chairs, _ = shop
    library.close()
    sheet = tmp_path / "artikel.csv"
    sheet.write_text(GERMAN_SHEET, encoding="utf-8")
    report = tmp_path / "report.csv"
    code = main(["import-metadata", str(sheet), "--column", "Artikel=sku", "--column", "Bezeichnung=title",
                 "--column", "Bild=image", "--match", "name", "--report", str(report)])  # fmt: skip
    assert code == 0
    assert "3 rows: 2 matched, updated 2 images" in capsys.readouterr().out
    assert [r[1] for r in csv.reader(report.open(encoding="utf-8"))][1:] == [
        "matched",
        "matched",
        "unmatched",
    ]

    assert main(["import-metadata", str(sheet), "--column", "Nope=sku"]) == 2
    assert "no column 'Nope'" in capsys.readouterr().err


def test_the_cli_role_names_are_the_catalog_product_fields():
    from visualfinder.catalog.records import META_FIELDS
    from visualfinder.products.roles import PRODUCT_FIELDS

    assert PRODUCT_FIELDS == META_FIELDS
