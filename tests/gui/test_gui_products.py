"""Product metadata in the app: titles, prices and extra columns on results; the query bar in the search box."""

from __future__ import annotations

from guihelpers import WAIT_MS, drop, search_and_wait, shown_paths
from PySide6.QtCore import QMimeData, Qt, QUrl

from visualfinder.gui.results_model import SecondLineRole


def import_products(qtbot, window, catalog_dir, tmp_path):
    sheet = tmp_path / "products.csv"
    sheet.write_text(
        "file,sku,title,price,tags,colour\n"
        "product_0003.jpg,CH-3,Oak dining chair,129.5,oak;chair,brown\n"
        "product_0004.jpg,CH-4,Walnut lounge chair,349,walnut;chair,dark\n"
        "product_0005.jpg,LP-5,Brass desk lamp,59,lamp,gold\n",
        encoding="utf-8",
    )
    job = window.session.run(window.session.writer, "Importing", lambda lib, ctx: lib.products.import_metadata(sheet),
                             refresh=True)  # fmt: skip
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    assert job.state == "succeeded", job.error
    qtbot.waitUntil(lambda: "colour" in window.session.snapshot.fields, timeout=WAIT_MS)


def test_results_show_product_titles_prices_and_metadata(qtbot, library_window, catalog_dir, tmp_path):
    import_products(qtbot, library_window, catalog_dir, tmp_path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0003.jpg"))])
    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))

    first = library_window.results_model.index(0)
    assert first.data(Qt.ItemDataRole.DisplayRole) == "Oak dining chair"
    assert first.data(SecondLineRole).endswith("·  129.50")
    tip = first.data(Qt.ItemDataRole.ToolTipRole)
    assert "SKU: CH-3" in tip and "Price: 129.50" in tip and "colour: brown" in tip

    library_window.filters.set_sort("price")
    prices = [library_window.results_model.result(i).record.price for i in range(3)]
    assert prices == [59.0, 129.5, 349.0]  # unpriced results follow


def test_the_search_box_takes_filters_and_minus_words_like_the_cli(
    qtbot, library_window, catalog_dir, tmp_path
):
    import_products(qtbot, library_window, catalog_dir, tmp_path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0001.jpg"))])
    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))
    field = library_window.search_field

    field.setText("tag:chair price:<200 -plastic")
    search_and_wait(qtbot, library_window, lambda: qtbot.keyClick(field, Qt.Key.Key_Return))
    assert shown_paths(library_window) == [str(catalog_dir / "product_0003.jpg")]
    kinds = [(t.kind, t.weight) for t in library_window.current_request().terms]
    assert kinds == [("pil", 1.0), ("text", -1.0)]

    field.setText("colour:gold")
    search_and_wait(qtbot, library_window, lambda: qtbot.keyClick(field, Qt.Key.Key_Return))
    assert shown_paths(library_window) == [str(catalog_dir / "product_0005.jpg")]


def test_a_query_bar_typo_is_explained(qtbot, library_window):
    field = library_window.search_field
    field.setText("chair after:someday")

    with qtbot.waitSignal(library_window.errorShown, timeout=WAIT_MS) as blocker:
        qtbot.keyClick(field, Qt.Key.Key_Return)

    assert "someday" in blocker.args[0]
