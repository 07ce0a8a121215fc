"""Product metadata: import from CSV / JSON / JSON Lines, matching, reports, sidecars, edits."""

from __future__ import annotations

import json

import pytest
from imagegen import make_catalog, write_image

from visualfinder.catalog.filters import FieldCondition, Filters
from visualfinder.products.fields import MetadataError, parse_price, parse_tags
from visualfinder.search.request import QueryTerm, SearchRequest


@pytest.fixture
def shop(library, tmp_path):
    """A catalog of chairs and lamps, indexed."""
    root = tmp_path / "catalog"
    chairs = make_catalog(root / "chairs", 3)
    lamps = make_catalog(root / "lamps", 2, start_seed=20, ext="png")
    library.index([root])
    return root, chairs, lamps


def test_csv_rows_match_by_path_relative_path_and_file_name_and_extras_are_kept(library, shop, tmp_path):
    root, chairs, lamps = shop
    csv_file = tmp_path / "products.csv"
    csv_file.write_text(
        "image,sku,title,description,tags,url,price,colour\n"
        f'{chairs[0]},AB-12,Oak chair,A sturdy chair,"oak, Living Room",https://shop.example/ab-12,129.50,natural\n'
        'catalog/chairs/product_0001.jpg,AB-13,Walnut chair,,walnut|dark,,"1.299,00",brown\n'
        "product_0020.png,LM-1,Brass lamp,,brass,,49,\n"
        "nowhere.jpg,XX-1,Ghost,,,,,\n",
        encoding="utf-8",
    )
    report = library.products.import_metadata(csv_file)
    assert (report.rows, report.matched_rows, report.images_updated) == (4, 3, 3)
    assert report.unmatched == [(5, "nowhere.jpg")] and not report.problems
    assert report.without_metadata == 2 and str(lamps[1]) in report.without_metadata_sample
    first = library.record(chairs[0])
    assert (first.sku, first.title, first.description, first.url, first.price) == (
        "AB-12", "Oak chair", "A sturdy chair", "https://shop.example/ab-12", 129.5,
    )  # fmt: skip
    assert first.tags == ["living room", "oak"] and first.extra == {"colour": "natural"}
    second = library.record(chairs[1])
    assert (second.sku, second.price, second.tags, second.description) == (
        "AB-13",
        1299.0,
        ["dark", "walnut"],
        None,
    )
    assert library.record(lamps[0]).extra == {}  # an empty extra cell stores nothing
    assert "colour" in library.products.metadata_fields()


def test_results_json_and_csv_export_carry_the_metadata(library, shop, tmp_path):
    _, chairs, _ = shop
    (tmp_path / "m.json").write_text(
        json.dumps(
            [
                {
                    "image": str(chairs[0]),
                    "sku": "AB-12",
                    "title": "Oak chair",
                    "tags": ["oak"],
                    "colour": "red",
                }
            ]
        )
    )
    library.products.import_metadata(tmp_path / "m.json")
    results = library.search(SearchRequest([QueryTerm("similar", chairs[0])], k=1)).results
    as_json = results[0].to_json()
    assert (as_json["sku"], as_json["title"], as_json["tags"], as_json["extra"]) == (
        "AB-12",
        "Oak chair",
        ["oak"],
        {"colour": "red"},
    )
    out = library.export_csv(results, tmp_path / "r.csv")
    text = out.read_text(encoding="utf-8")
    header, row = text.splitlines()[:2]
    assert (
        header.split(",")[-1] == "colour" and row.endswith(",red") and "AB-12" in row and "Oak chair" in row
    )


def test_json_lines_and_sku_named_files_match_without_an_image_column(library, tmp_path):
    root = tmp_path / "catalog"
    write_image(root / "AB-12.jpg", 1)
    write_image(root / "ab-13.png", 2)
    library.index([root])
    jl = tmp_path / "feed.jsonl"
    jl.write_text(
        '{"sku": "AB-12", "title": "Oak chair"}\n\n{"sku": "AB-13", "price": "€ 80"}\nnot json\n{"title": "no key"}\n'
    )
    report = library.products.import_metadata(jl)
    assert report.matched_rows == 2 and report.images_updated == 2
    assert [line for line, _ in report.problems] == [4, 5]
    assert library.record(root / "ab-13.png").price == 80.0


def test_a_file_name_shared_by_two_images_is_reported_as_ambiguous(library, tmp_path):
    root = tmp_path / "catalog"
    write_image(root / "a" / "front.jpg", 1)
    write_image(root / "b" / "front.jpg", 2)
    library.index([root])
    csv_file = tmp_path / "m.csv"
    csv_file.write_text("file,title\nfront.jpg,Which one?\nb/front.jpg,The b one\n")
    report = library.products.import_metadata(csv_file)
    assert report.ambiguous == [(2, "front.jpg", 2)] and report.images_updated == 1
    assert library.record(root / "b" / "front.jpg").title == "The b one"
    assert library.record(root / "a" / "front.jpg").title is None


def test_reimporting_changes_only_the_columns_the_file_has_and_tags_merge_unless_replaced(
    library, shop, tmp_path
):
    _, chairs, _ = shop
    library.products.add_tags(chairs[0], ["favourite"])
    (tmp_path / "a.csv").write_text(f"image,sku,title,tags\n{chairs[0]},AB-12,Oak chair,oak\n")
    library.products.import_metadata(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text(f"image,title,price\n{chairs[0]},Oak chair v2,99\n")
    library.products.import_metadata(tmp_path / "b.csv")
    record = library.record(chairs[0])
    assert (record.sku, record.title, record.price, record.tags) == (
        "AB-12",
        "Oak chair v2",
        99.0,
        ["favourite", "oak"],
    )
    (tmp_path / "c.csv").write_text(f"image,tags\n{chairs[0]},walnut\n")
    library.products.import_metadata(tmp_path / "c.csv", replace_tags=True)
    assert library.record(chairs[0]).tags == ["walnut"]


def test_a_dry_run_reports_and_writes_nothing(library, shop, tmp_path):
    _, chairs, _ = shop
    (tmp_path / "a.csv").write_text(f"image,sku\n{chairs[0]},AB-12\n")
    report = library.products.import_metadata(tmp_path / "a.csv", dry_run=True)
    assert report.images_updated == 1 and report.dry_run
    assert library.record(chairs[0]).sku is None


def test_unreadable_metadata_files_are_clear_errors_and_change_nothing(library, shop, tmp_path):
    with pytest.raises(MetadataError, match="not found"):
        library.products.import_metadata(tmp_path / "missing.csv")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        library.products.import_metadata(tmp_path / "bad.json")
    (tmp_path / "nohead.csv").write_text("a.jpg,AB-12\n")
    with pytest.raises(MetadataError, match="first line must name the columns"):
        library.products.import_metadata(tmp_path / "nohead.csv")


def test_excel_exports_with_semicolons_bom_and_cp1252_are_read(library, shop, tmp_path):
    _, chairs, _ = shop
    (tmp_path / "excel.csv").write_bytes(
        "\ufeffImage;SKU;Product Name;Price\n".encode()
        + f"{chairs[2].name};AB-14;Chaise longue;12,50\n".encode()
    )
    assert library.products.import_metadata(tmp_path / "excel.csv").images_updated == 1
    assert (library.record(chairs[2]).title, library.record(chairs[2]).price) == ("Chaise longue", 12.5)
    (tmp_path / "latin.csv").write_bytes(b"image,title\n" + f"{chairs[1].name},Café chair\n".encode("cp1252"))
    library.products.import_metadata(tmp_path / "latin.csv")
    assert library.record(chairs[1]).title == "Café chair"


def test_metadata_changes_enqueue_upserts_for_the_mirror(library, shop, tmp_path):
    _, chairs, _ = shop
    library.catalog.enable_outbox()
    (tmp_path / "a.csv").write_text(f"image,sku\n{chairs[0]},AB-12\n")
    library.products.import_metadata(tmp_path / "a.csv")
    library.products.update_metadata(chairs[1], title="Walnut chair")
    ops = library.catalog.conn.execute("SELECT op, image_id FROM outbox ORDER BY id").fetchall()
    assert ops == [("upsert", library.image_id(chairs[0])), ("upsert", library.image_id(chairs[1]))]


def test_sidecar_files_are_picked_up_by_indexing_once_and_again_when_changed(library, tmp_path):
    root = tmp_path / "catalog"
    photo = write_image(root / "sofas" / "photo.jpg", 1)
    other = write_image(root / "sofas" / "other.jpg", 2)
    (root / "sofas" / "photo.jpg.json").write_text(
        json.dumps({"sku": "SF-1", "title": "Green sofa", "tags": "green"})
    )
    (root / "sofas" / "products.csv").write_text("file,title,material\nother.jpg,Red sofa,leather\n")
    report = library.index([root])
    assert report.metadata_updated == 2
    assert (library.record(photo).title, library.record(photo).tags) == ("Green sofa", ["green"])
    assert library.record(other).extra == {"material": "leather"}
    library.products.update_metadata(other, title="Edited in the app")
    assert library.index().metadata_updated == 0  # unchanged sidecars do not overwrite edits
    assert library.record(other).title == "Edited in the app"
    (root / "sofas" / "products.csv").write_text("file,title\nother.jpg,Crimson sofa\nlater.jpg,Later sofa\n")
    assert library.index().metadata_updated == 1
    assert library.record(other).title == "Crimson sofa"
    later = write_image(root / "sofas" / "later.jpg", 3)
    assert library.index().metadata_updated == 1  # a new image picks up the unchanged sidecar's row
    assert library.record(later).title == "Later sofa" and library.record(other).title == "Crimson sofa"


def test_a_broken_sidecar_is_a_warning_and_indexing_goes_on(library, tmp_path):
    root = tmp_path / "catalog"
    photo = write_image(root / "photo.jpg", 1)
    (root / "photo.jpg.json").write_text("{oops")
    report = library.index([root])
    assert report.added == 1 and any(p.endswith("photo.jpg.json") for p, _ in report.folder_errors)
    assert library.record(photo).title is None


def test_metadata_filters_equal_contains_compare_and_extra_fields(library, shop, tmp_path):
    _, chairs, lamps = shop
    (tmp_path / "m.csv").write_text(
        "image,sku,title,price,colour\n"
        f"{chairs[0]},AB-12,Oak chair,129.5,red\n{chairs[1]},AB-13,Walnut Chair,80,blue\n{lamps[0]},LM-1,Brass lamp,49,red\n"
    )
    library.products.import_metadata(tmp_path / "m.csv")

    def paths(*conditions):
        request = SearchRequest(
            [QueryTerm("similar", chairs[0])], k=10, filters=Filters(fields=list(conditions))
        )
        return sorted(r.path for r in library.search(request).results)

    assert paths(FieldCondition("sku", "ab-12")) == [str(chairs[0])]
    assert paths(FieldCondition("title", "chair", contains=True)) == sorted([str(chairs[0]), str(chairs[1])])
    assert paths(FieldCondition("price", "100", op="<")) == sorted([str(chairs[1]), str(lamps[0])])
    assert paths(FieldCondition("colour", "RED")) == sorted([str(chairs[0]), str(lamps[0])])
    assert paths(FieldCondition("colour", "red"), FieldCondition("price", "60", op=">")) == [str(chairs[0])]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12.5", 12.5),
        ("€ 12,50", 12.5),
        ("1,299.00", 1299.0),
        ("1.299,00 EUR", 1299.0),
        ("1,299", 1299.0),
        (7, 7.0),
    ],
)
def test_prices_are_read_the_way_shops_write_them(text, value):
    assert parse_price(text) == value


def test_tags_split_on_commas_pipes_and_semicolons():
    assert parse_tags("Oak, walnut|Dark;oak") == ["oak", "walnut", "dark"]
    assert parse_tags(["A", " b "]) == ["a", "b"]
