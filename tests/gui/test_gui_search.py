"""Searching from the app: drops, paste, web images, text, find similar, crop, bad images."""

from __future__ import annotations

import functools
import http.server
import io
import threading

import pytest
from guihelpers import WAIT_MS, drop, search_and_wait, shown_paths
from imagegen import make_catalog, product_image, write_image
from PIL import Image
from PySide6.QtCore import QByteArray, QMimeData, Qt, QUrl
from PySide6.QtGui import QGuiApplication, QImage

from visualfinder.gui.results_model import KeptRole, ScoreRole, SecondLineRole


def file_mime(*paths) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_dropping_an_image_file_shows_it_and_fills_the_grid_with_it_first(qtbot, library_window, catalog_dir):
    query = catalog_dir / "product_0005.jpg"
    response = search_and_wait(qtbot, library_window, lambda: drop(library_window, file_mime(query)))

    assert library_window.query_panel.view.has_image
    assert "product_0005.jpg" in library_window.query_panel.caption.text()
    paths = shown_paths(library_window)
    assert paths[0] == str(query)
    assert len(paths) == 12  # k (50) is more than the library: every image, best first
    assert response.results[0].score == pytest.approx(1.0, abs=1e-3)
    assert library_window.pages.currentWidget() is library_window.results_view


def test_dropping_raw_image_data_from_a_browser_searches_with_it(qtbot, library_window, catalog_dir):
    mime = QMimeData()
    mime.setData("image/png", QByteArray(png_bytes(product_image(7))))

    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))

    assert shown_paths(library_window)[0] == str(catalog_dir / "product_0007.jpg")
    assert "dropped image" in library_window.query_panel.caption.text()


def test_dropping_a_qt_image_searches_with_it(qtbot, library_window, catalog_dir):
    image = QImage(str(catalog_dir / "product_0002.jpg"))
    mime = QMimeData()
    mime.setImageData(image)

    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))

    assert shown_paths(library_window)[0] == str(catalog_dir / "product_0002.jpg")


def test_pasting_a_copied_image_searches_with_it(qtbot, library_window, catalog_dir):
    QGuiApplication.clipboard().setImage(QImage(str(catalog_dir / "product_0009.jpg")))

    search_and_wait(qtbot, library_window, library_window.paste_action.trigger)

    assert shown_paths(library_window)[0] == str(catalog_dir / "product_0009.jpg")
    assert "pasted image" in library_window.query_panel.caption.text()


def test_pasting_a_copied_file_searches_with_that_file(qtbot, library_window, catalog_dir):
    QGuiApplication.clipboard().setMimeData(file_mime(catalog_dir / "product_0004.jpg"))

    search_and_wait(qtbot, library_window, library_window.paste_action.trigger)

    assert shown_paths(library_window)[0] == str(catalog_dir / "product_0004.jpg")


def test_pasting_text_shows_a_hint_instead_of_searching(qtbot, library_window):
    QGuiApplication.clipboard().setText("just some words")

    library_window.paste_action.trigger()

    assert "no image" in library_window.statusBar().currentMessage()
    assert library_window.response is None


@pytest.fixture
def web_server(tmp_path):
    """A real HTTP server on localhost serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_dropping_a_web_image_address_downloads_and_searches(qtbot, library_window, catalog_dir, web_server):
    root, base = web_server
    write_image(root / "shop" / "item.png", 3)
    mime = QMimeData()
    mime.setUrls([QUrl(f"{base}/shop/item.png")])

    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))

    assert shown_paths(library_window)[0] == str(catalog_dir / "product_0003.jpg")
    assert "item.png" in library_window.query_panel.caption.text()


def test_a_web_address_that_is_not_an_image_shows_why(qtbot, library_window, web_server):
    root, base = web_server
    (root / "page.html").write_text("<!DOCTYPE html><html><body>hello</body></html>")
    mime = QMimeData()
    mime.setUrls([QUrl(f"{base}/page.html")])

    with qtbot.waitSignal(library_window.errorShown, timeout=WAIT_MS) as blocker:
        drop(library_window, mime)

    message = blocker.args[0]
    assert "not an image" in message and "html" in message.lower()
    assert library_window.message_bar.message == message


def test_a_query_image_that_cannot_be_decoded_shows_a_message_and_keeps_the_results(
    qtbot, library_window, catalog_dir, tmp_path
):
    search_and_wait(
        qtbot, library_window, lambda: drop(library_window, file_mime(catalog_dir / "product_0001.jpg"))
    )
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")

    with qtbot.waitSignal(library_window.errorShown, timeout=WAIT_MS) as blocker:
        drop(library_window, file_mime(broken))

    message = blocker.args[0]
    assert message.startswith(f"cannot use {broken} as a query image:")
    assert "Traceback" not in message
    assert library_window.message_bar.message == message
    assert library_window.message_bar.kind == "error"
    assert shown_paths(library_window)[0] == str(catalog_dir / "product_0001.jpg")  # the last results stay
    assert "product_0001.jpg" in library_window.query_panel.caption.text()


def test_find_similar_in_the_context_menu_makes_that_image_the_query(qtbot, library_window, catalog_dir):
    search_and_wait(
        qtbot, library_window, lambda: drop(library_window, file_mime(catalog_dir / "product_0001.jpg"))
    )
    view = library_window.results_view
    row = 3
    target = library_window.results_model.result(row)
    rect = view.visualRect(library_window.results_model.index(row))

    menu = library_window.result_actions.menu(rect.center())
    find_similar = next(a for a in menu.actions() if a.objectName() == "find_similar")
    assert menu.defaultAction() is find_similar
    response = search_and_wait(qtbot, library_window, find_similar.trigger)

    assert response.results[0].id == target.id
    assert response.results[0].score == pytest.approx(1.0, abs=1e-4)  # the stored vector itself
    assert target.record.file_name in library_window.query_panel.caption.text()
    assert "from the catalog" in library_window.query_panel.caption.text()


def test_dragging_a_rectangle_on_the_query_searches_just_that_region(
    qtbot, library_window, catalog_dir, tmp_path
):
    # A query with two catalog images side by side: the right half is exactly product_0006.
    left = Image.open(catalog_dir / "product_0002.jpg").convert("RGB")
    right = Image.open(catalog_dir / "product_0006.jpg").convert("RGB")
    pair = Image.new("RGB", (left.width + right.width, left.height))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    pair_path = tmp_path / "pair.png"
    pair.save(pair_path)
    search_and_wait(qtbot, library_window, lambda: drop(library_window, file_mime(pair_path)))

    view = library_window.query_panel.view
    start, end = view.point_at(0.5, 0.0), view.point_at(1.0, 1.0)
    with qtbot.waitSignal(library_window.resultsShown, timeout=WAIT_MS):
        qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
        qtbot.mouseMove(view, end)
        qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)

    x, y, w, h = view.crop
    assert (x, y) == pytest.approx((0.5, 0.0), abs=0.01)
    assert (w, h) == pytest.approx((0.5, 1.0), abs=0.01)
    assert shown_paths(library_window)[0] == str(catalog_dir / "product_0006.jpg")
    assert "region 50% × 100%" in library_window.query_panel.caption.text()

    # A double-click goes back to the whole image.
    with qtbot.waitSignal(library_window.resultsShown, timeout=WAIT_MS):
        qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=view.point_at(0.5, 0.5))
    assert view.crop is None


def test_typing_a_description_searches_by_text(qtbot, library_window):
    field = library_window.search_field
    field.setText("a red chair")

    response = search_and_wait(qtbot, library_window, lambda: qtbot.keyClick(field, Qt.Key.Key_Return))

    assert [t.kind for t in library_window.current_request().terms] == ["text"]
    assert len(response.results) == 12
    assert "a red chair" in library_window.query_panel.caption.text()


def test_text_refines_an_image_query(qtbot, library_window, catalog_dir):
    search_and_wait(
        qtbot, library_window, lambda: drop(library_window, file_mime(catalog_dir / "product_0001.jpg"))
    )
    library_window.search_field.setText("blue")

    search_and_wait(
        qtbot, library_window, lambda: qtbot.keyClick(library_window.search_field, Qt.Key.Key_Return)
    )

    assert [t.kind for t in library_window.current_request().terms] == ["pil", "text"]


def test_scores_are_shown_under_each_result_and_in_its_tooltip(qtbot, library_window, catalog_dir):
    search_and_wait(
        qtbot, library_window, lambda: drop(library_window, file_mime(catalog_dir / "product_0003.jpg"))
    )
    model = library_window.results_model
    index = model.index(1)
    score = index.data(ScoreRole)

    assert f"{score:.3f}" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert str(catalog_dir / model.result(1).record.file_name) in index.data(Qt.ItemDataRole.ToolTipRole)
    assert index.data(SecondLineRole).startswith(f"{score:.3f}")


def test_threshold_greys_or_hides_weaker_results_and_sort_reorders_them(qtbot, library_window, catalog_dir):
    search_and_wait(
        qtbot, library_window, lambda: drop(library_window, file_mime(catalog_dir / "product_0003.jpg"))
    )
    model = library_window.results_model
    filters = library_window.filters
    scores = sorted((model.result(i).score for i in range(model.rowCount())), reverse=True)

    filters.set_threshold(scores[4])  # the slider keeps two decimals
    above = sum(s >= filters.threshold_value for s in scores)
    assert 0 < above < 12
    kept_flags = [model.index(i).data(KeptRole) for i in range(model.rowCount())]
    assert model.rowCount() == 12 and kept_flags.count(True) == above  # greyed, still shown
    assert "below" in library_window.summary.text()

    filters.hide_below.setChecked(True)
    assert model.rowCount() == above
    assert len(model.kept()) == above

    filters.set_sort("name")
    names = [model.result(i).record.file_name for i in range(model.rowCount())]
    assert names == sorted(names)
    filters.order.click()  # descending
    names = [model.result(i).record.file_name for i in range(model.rowCount())]
    assert names == sorted(names, reverse=True)

    filters.hide_below.setChecked(False)
    filters.set_sort("similarity")
    shown = [model.result(i).score for i in range(model.rowCount())]
    assert shown == sorted(shown, reverse=True)


def test_folder_filter_searches_only_that_folder(qtbot, make_window, catalog_dir, tmp_path):
    other = tmp_path / "other"
    make_catalog(other, 4, start_seed=100)
    window = make_window([catalog_dir, other])
    search_and_wait(qtbot, window, lambda: drop(window, file_mime(catalog_dir / "product_0003.jpg")))
    assert len(shown_paths(window)) == 16

    window.filters.select_folder(str(other))
    search_and_wait(qtbot, window, window.filters.searchChanged.emit)

    assert len(shown_paths(window)) == 4
    assert all(p.startswith(str(other)) for p in shown_paths(window))
