"""File › Import product data…: choose a sheet, preview it, map its columns, check, import, save the report."""

from __future__ import annotations

import csv

from guihelpers import WAIT_MS
from PySide6.QtCore import Qt

SHEET = (
    "Artikel;Bezeichnung;Datei;Preis;Farbe\n"
    "CH-3;Eichenstuhl;product_0003.jpg;129,50;natur\n"
    "CH-4;Nussbaumstuhl;product_0004.jpg;349;braun\n"
    "XX-9;Geist;nirgends.jpg;;\n"
)


def open_import(qtbot, window, sheet):
    window.dialogs.files["Import product data"] = str(sheet)
    window.import_action.trigger()
    dialog = window.library_actions.import_dialog
    assert dialog is not None and dialog.isVisible()
    with qtbot.waitSignal(dialog.previewShown, timeout=WAIT_MS):
        qtbot.mouseClick(dialog.browse, Qt.MouseButton.LeftButton)
    return dialog


def test_a_sheet_is_previewed_mapped_checked_imported_and_its_report_saved(
    qtbot, library_window, catalog_dir, tmp_path
):
    window = library_window
    sheet = tmp_path / "artikel.csv"
    sheet.write_text(SHEET, encoding="utf-8")
    dialog = open_import(qtbot, window, sheet)

    table = dialog.preview_table
    assert table.rowCount() == 3 and table.columnCount() == 5
    assert [table.horizontalHeaderItem(c).text() for c in range(5)] == [
        "Artikel",
        "Bezeichnung",
        "Datei",
        "Preis",
        "Farbe",
    ]
    assert table.item(0, 1).text() == "Eichenstuhl"
    assert dialog.role_box("Preis").currentData() == "extra"  # unknown headers: extras until mapped
    assert "3 rows" in dialog.sheet_info.text()

    for column, role in (
        ("Artikel", "sku"),
        ("Bezeichnung", "title"),
        ("Datei", "image"),
        ("Preis", "price"),
    ):
        dialog.set_role(column, role)
    dialog.set_match("name")
    with qtbot.waitSignal(dialog.reportShown, timeout=WAIT_MS) as checked:
        qtbot.mouseClick(dialog.check_button, Qt.MouseButton.LeftButton)
    report = checked.args[0]
    assert report.dry_run and (report.matched_rows, report.images_updated) == (2, 2)
    assert "2 matched, 1 not matched; would update 2 images" in dialog.summary.text()
    assert (
        dialog.report_table.item(0, 1).text() == "Not matched"
        and dialog.report_table.item(0, 2).text() == "nirgends.jpg"
    )
    assert (
        window.session.library.record(catalog_dir / "product_0003.jpg").title is None
    )  # a check writes nothing

    report_file = tmp_path / "report.csv"
    window.dialogs.csv = (str(report_file), False)
    qtbot.mouseClick(dialog.save_report_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(report_file.exists, timeout=WAIT_MS)
    rows = list(csv.reader(report_file.open(encoding="utf-8")))
    assert [r[1] for r in rows[1:]] == ["matched", "matched", "unmatched"]
    assert rows[1][3] == str(catalog_dir / "product_0003.jpg")

    with qtbot.waitSignal(dialog.imported, timeout=WAIT_MS) as done:
        qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    assert not done.args[0].dry_run and done.args[0].images_updated == 2
    record = window.session.library.record(catalog_dir / "product_0003.jpg")
    assert (record.sku, record.title, record.price, record.extra) == (
        "CH-3",
        "Eichenstuhl",
        129.5,
        {"Farbe": "natur"},
    )
    qtbot.waitUntil(
        lambda: "Farbe" in window.session.snapshot.fields, timeout=WAIT_MS
    )  # the query bar knows it


def test_a_mapping_that_cannot_match_and_an_unreadable_file_are_explained(qtbot, library_window, tmp_path):
    window = library_window
    sheet = tmp_path / "artikel.csv"
    sheet.write_text(SHEET, encoding="utf-8")
    dialog = open_import(qtbot, window, sheet)
    dialog.set_match("sku")  # no column is the sku yet
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    assert "needs a column marked as the sku" in dialog.summary.text()
    assert dialog._job is None

    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    job = dialog.load(str(broken))
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    assert "not valid JSON" in dialog.summary.text()
    assert not dialog.import_button.isEnabled() and dialog.mapping_table.rowCount() == 0


def test_json_lines_match_by_sku_and_the_results_show_the_titles(
    qtbot, library_window, catalog_dir, tmp_path
):
    import json

    from guihelpers import drop, search_and_wait
    from PySide6.QtCore import QMimeData, QUrl

    window = library_window
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0005.jpg"))])
    search_and_wait(qtbot, window, lambda: drop(window, mime))

    sheet = tmp_path / "feed.jsonl"
    sheet.write_text(
        "".join(json.dumps({"sku": f"product_{i:04d}", "name": f"Lamp {i}"}) + "\n" for i in range(12))
    )
    dialog = open_import(qtbot, window, sheet)
    assert dialog.match_by.currentData() == "sku"  # no image column: the sku names the file
    assert dialog.role_box("name").currentData() == "title"
    # The grid searches again once the import is done.
    with (
        qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS),
        qtbot.waitSignal(dialog.imported, timeout=WAIT_MS),
    ):
        qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    first = window.results_model.index(0)
    assert first.data(Qt.ItemDataRole.DisplayRole) == "Lamp 5"
