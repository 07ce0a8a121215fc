"""What can be done with a result: open, show in folder, copy, tags, drag out; thumbnails in the grid."""

from __future__ import annotations

import pytest
from guihelpers import WAIT_MS, drop, search_and_wait, shown_paths
from PySide6.QtCore import QItemSelectionModel, QMimeData, Qt, QUrl
from PySide6.QtGui import QGuiApplication, QPixmap


@pytest.fixture
def results_window(qtbot, library_window, catalog_dir):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0005.jpg"))])
    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))
    return library_window


def select_rows(window, *rows: int) -> None:
    view = window.results_view
    selection = view.selectionModel()
    selection.clearSelection()
    for row in rows:
        selection.select(window.results_model.index(row), QItemSelectionModel.SelectionFlag.Select)
    selection.setCurrentIndex(window.results_model.index(rows[0]), QItemSelectionModel.SelectionFlag.NoUpdate)


def test_double_click_opens_the_image_with_the_default_app(qtbot, results_window):
    view = results_window.results_view
    rect = view.visualRect(results_window.results_model.index(2))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    assert results_window.desktop.opened == [shown_paths(results_window)[2]]


def test_context_menu_opens_shows_in_folder_and_copies_the_path(results_window):
    select_rows(results_window, 1)
    path = shown_paths(results_window)[1]
    menu = results_window.result_actions.menu()
    actions = {a.objectName(): a for a in menu.actions() if a.objectName()}
    assert {
        "find_similar",
        "open",
        "show_in_folder",
        "copy_image",
        "copy_path",
        "copy_tags",
        "edit_tags",
    } <= set(actions)

    actions["open"].trigger()
    actions["show_in_folder"].trigger()
    actions["copy_path"].trigger()

    assert results_window.desktop.opened == [path]
    assert results_window.desktop.shown == [path]
    assert QGuiApplication.clipboard().text() == path


def test_copy_image_puts_the_picture_and_the_file_on_the_clipboard(qtbot, results_window):
    select_rows(results_window, 0)
    path = shown_paths(results_window)[0]

    results_window.result_actions.copy_image.trigger()

    qtbot.waitUntil(lambda: QGuiApplication.clipboard().mimeData().hasImage(), timeout=WAIT_MS)
    mime = QGuiApplication.clipboard().mimeData()
    assert [u.toLocalFile() for u in mime.urls()] == [path]
    image = QGuiApplication.clipboard().image()
    assert (image.width(), image.height()) == (320, 240)


def test_edited_tags_show_in_place_and_become_a_filter(qtbot, results_window):
    select_rows(results_window, 2)
    target = results_window.results_model.result(2)
    results_window.result_actions.edit_tags.trigger()
    dialog = results_window.result_actions.tags_dialog
    dialog.edit.setText("Oak, dining chair, oak")

    with qtbot.waitSignal(results_window.session.snapshotChanged, timeout=WAIT_MS):
        dialog.accept()

    assert target.record.tags == ["dining chair", "oak"]
    assert "dining chair, oak" in results_window.results_model.index(2).data(Qt.ItemDataRole.ToolTipRole)
    tags = [results_window.filters.tag.itemData(i) for i in range(results_window.filters.tag.count())]
    assert tags == [None, "dining chair", "oak"]

    results_window.filters.select_tag("oak")
    search_and_wait(qtbot, results_window, results_window.filters.searchChanged.emit)
    assert shown_paths(results_window) == [target.record.path]


def test_copied_tags_can_be_pasted_onto_other_results(qtbot, results_window):
    select_rows(results_window, 0)
    job = results_window.result_actions.change_tags(
        [results_window.results_model.result(0).id], ["summer"], []
    )
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    results_window.result_actions.copy_tags.trigger()
    assert QGuiApplication.clipboard().text() == "summer"

    select_rows(results_window, 3, 4)
    assert results_window.result_actions.paste_tags.isEnabled()
    with qtbot.waitSignal(results_window.session.snapshotChanged, timeout=WAIT_MS):
        results_window.result_actions.paste_tags.trigger()

    assert results_window.session.snapshot.tags == [("summer", 3)]
    assert results_window.results_model.result(4).record.tags == ["summer"]


def test_results_are_dragged_out_as_files(results_window):
    select_rows(results_window, 0, 1)
    model = results_window.results_model
    indexes = results_window.results_view.selectionModel().selectedIndexes()

    mime = model.mimeData(indexes)

    assert [u.toLocalFile() for u in mime.urls()] == shown_paths(results_window)[:2]
    assert model.flags(indexes[0]) & Qt.ItemFlag.ItemIsDragEnabled
    assert results_window.results_view.dragEnabled()


def test_thumbnails_load_in_the_background_for_the_visible_results(qtbot, results_window):
    model = results_window.results_model
    index = model.index(0)
    qtbot.waitUntil(lambda: isinstance(index.data(Qt.ItemDataRole.DecorationRole), QPixmap), timeout=WAIT_MS)

    pixmap = index.data(Qt.ItemDataRole.DecorationRole)
    size = results_window.results_view.icon_size
    assert max(pixmap.deviceIndependentSize().width(), pixmap.deviceIndependentSize().height()) == size
    assert results_window.thumbnails.is_cached(model.result(0).record.path)
