"""Managing the library from the app: first start, folders, progress, closing mid-run, settings."""

from __future__ import annotations

import csv
import os

import torch
from guihelpers import WAIT_MS, close_window, drop, search_and_wait
from imagegen import make_catalog, write_image
from PySide6.QtCore import QMimeData, Qt, QUrl

from visualfinder.config import Settings
from visualfinder.gui.folders_panel import COL_IMAGES, COL_WATCH
from visualfinder.gui.model_fetch import show_progress
from visualfinder.jobs import Progress
from visualfinder.library.facade import open_library
from visualfinder.products.export import COLUMNS


def folder_mime(path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


def test_first_start_with_an_empty_library_asks_for_a_folder(make_window):
    window = make_window()

    assert window.pages.currentWidget() is window.empty_page
    assert window.empty_page.title.text() == "Drop a folder here"
    assert window.library_label.text() == "0 images"
    assert window.folders_panel.tree.topLevelItemCount() == 0
    assert not window.export_action.isEnabled()


def test_adding_a_folder_shows_progress_then_its_count(qtbot, make_window, catalog_dir):
    window = make_window()
    window.dialogs.folder = str(catalog_dir)

    window.add_folder_action.trigger()

    (task,) = [t for t in window.progress.tasks if t.title.startswith("Indexing")]
    job = task.key
    assert not window.progress.isHidden()
    assert window.progress.label.text().startswith("Indexing catalog")
    with qtbot.waitSignal(job.progressed, timeout=WAIT_MS, check_params_cb=lambda p: p.phase == "indexing"):
        pass
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.folders_panel.item_for(str(catalog_dir)) is not None, timeout=WAIT_MS)

    item = window.folders_panel.item_for(str(catalog_dir))
    assert item.text(COL_IMAGES) == "12"
    assert item.checkState(COL_WATCH) == Qt.CheckState.Checked  # added folders are watched by default
    assert window.progress.isHidden()
    assert window.library_label.text() == "12 images"
    assert "Indexed catalog: 12 images" in window.statusBar().currentMessage()
    assert window.pages.currentWidget() is window.ready_page


def test_dropping_a_folder_on_the_window_adds_it(qtbot, make_window, catalog_dir):
    window = make_window()

    assert drop(window, folder_mime(catalog_dir))

    qtbot.waitUntil(lambda: window.session.snapshot.images == 12, timeout=WAIT_MS)
    assert window.folders_panel.item_for(str(catalog_dir)) is not None
    assert window.pages.currentWidget() is window.ready_page


def test_skipped_files_are_reported_with_their_reason(qtbot, make_window, catalog_dir):
    (catalog_dir / "truncated.jpg").write_bytes((catalog_dir / "product_0000.jpg").read_bytes()[:200])
    window = make_window([catalog_dir])

    assert window.message_bar.kind == "warning"
    assert "1 file could not be read" in window.message_bar.message
    item = window.folders_panel.item_for(str(catalog_dir))
    assert "1 skipped" in item.text(COL_IMAGES)
    assert window.folders_panel.errors_button.text() == "1 skipped"

    dialog = window.library_actions.show_skipped()
    assert dialog.table.topLevelItemCount() == 1
    assert dialog.table.topLevelItem(0).text(0) == str(catalog_dir / "truncated.jpg")
    assert "truncated" in dialog.table.topLevelItem(0).text(1)
    dialog.close()


def test_retry_skipped_reads_a_skipped_file_again_even_when_its_size_and_mtime_are_unchanged(
    qtbot, make_window, catalog_dir
):
    good = (catalog_dir / "product_0000.jpg").read_bytes()
    broken = catalog_dir / "repaired.jpg"
    broken.write_bytes(good[:200] + bytes(len(good) - 200))  # same size, not a readable image
    window = make_window([catalog_dir])
    assert "1 skipped" in window.folders_panel.errors_button.text()
    stat = broken.stat()
    broken.write_bytes(good)  # fixed in place; size and mtime as before: a scan sees no change
    os.utime(broken, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    job = window.library_actions.reindex_all()
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    # A permanent skip is retried only when the file changes: the update leaves it alone.
    assert (job.result.added, job.result.updated, job.result.unchanged) == (0, 0, 13)

    dialog = window.library_actions.show_skipped()
    assert dialog.retry_button.isEnabled()
    dialog.retry_button.click()
    qtbot.waitUntil(lambda: window.session.snapshot.status.stats.errors == 0, timeout=WAIT_MS)
    assert window.session.snapshot.images == 13
    assert window.folders_panel.errors_button.text() != "1 skipped"


def test_removing_a_folder_asks_first_then_forgets_its_images(qtbot, make_window, catalog_dir, tmp_path):
    other = tmp_path / "other"
    make_catalog(other, 3, start_seed=50)
    window = make_window([catalog_dir, other])
    panel = window.folders_panel
    panel.item_for(str(other)).setSelected(True)

    window.dialogs.answers["Remove folder"] = "Cancel"
    panel.remove_button.click()
    assert window.dialogs.asked[-1] == ("Remove folder", f"Remove {other} from the catalog?")
    assert panel.item_for(str(other)) is not None

    window.dialogs.answers["Remove folder"] = "Remove"
    panel.remove_button.click()
    qtbot.waitUntil(lambda: panel.item_for(str(other)) is None, timeout=WAIT_MS)
    assert window.session.snapshot.images == 12
    assert all(other.joinpath(f"product_{i:04d}.jpg").exists() for i in range(50, 53))  # files untouched


def test_unticking_watch_stops_watching_the_folder(qtbot, make_window, catalog_dir):
    window = make_window([catalog_dir])
    item = window.folders_panel.item_for(str(catalog_dir))

    item.setCheckState(COL_WATCH, Qt.CheckState.Unchecked)

    qtbot.waitUntil(lambda: not window.session.snapshot.status.folders[0].folder.watched, timeout=WAIT_MS)
    item = window.folders_panel.item_for(str(catalog_dir))
    assert item.checkState(COL_WATCH) == Qt.CheckState.Unchecked


def test_closing_the_window_while_indexing_stops_and_keeps_what_was_committed(
    qtbot, make_window, tmp_path, settings
):
    big = tmp_path / "big"
    for i in range(240):
        write_image(big / f"item_{i:04d}.jpg", 1000 + i, size=(96, 96))
    window = make_window()
    (job,) = window.library_actions.add_folders([str(big)])

    # Close as soon as the first batch is committed.
    with qtbot.waitSignal(
        job.progressed, timeout=WAIT_MS, check_params_cb=lambda p: p.phase == "indexing" and p.done
    ):
        pass
    window.close()
    assert window.isVisible()  # it stays until the worker has stopped and the library is saved
    assert (
        "Stopping" in window.statusBar().currentMessage() or "Closing" in window.statusBar().currentMessage()
    )
    qtbot.waitUntil(lambda: window.session.state == "shut", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT_MS)
    assert job.state in ("succeeded", "cancelled")
    if job.state == "succeeded":
        assert job.result.cancelled

    with open_library(settings) as library:
        status = library.status()
        committed = status.stats.embedded_current
        assert 0 < committed < 240
        assert status.index_count == committed  # the saved index matches the catalog
        report = library.index()  # the next run picks up the rest
        assert report.added == 240 - committed
        assert library.status().stats.embedded_current == 240


def test_export_writes_the_results_shown_to_csv(qtbot, library_window, catalog_dir, tmp_path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0008.jpg"))])
    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))
    dest = tmp_path / "out" / "results.csv"
    dest.parent.mkdir()
    library_window.dialogs.csv = (str(dest), True)
    library_window.filters.set_threshold(0.0)

    job = library_window.result_actions.export_csv()
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)

    assert job.state == "succeeded", job.error
    raw = dest.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the Excel choice adds a BOM
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 13
    assert rows[1][COLUMNS.index("path")] == str(catalog_dir / "product_0008.jpg")
    assert "Exported 12 results" in library_window.statusBar().currentMessage()

    # Hidden (below the threshold) results are not exported.
    library_window.filters.set_threshold(1.0)
    library_window.filters.hide_below.setChecked(True)
    library_window.dialogs.csv = (str(dest), False)
    job = library_window.result_actions.export_csv()
    if job is not None:  # the query itself scores 1.0 (it may round just below)
        qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
        assert len(dest.read_text(encoding="utf-8").splitlines()) <= 2


def test_ctrl_e_exports_through_the_toolbar_action(qtbot, library_window, catalog_dir, tmp_path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0001.jpg"))])
    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))
    dest = tmp_path / "ctrl-e.csv"
    library_window.dialogs.csv = (str(dest), False)

    assert library_window.export_action.shortcut().toString() == "Ctrl+E"
    assert library_window.export_action in library_window.toolbar.actions()
    library_window.export_action.trigger()

    qtbot.waitUntil(dest.exists, timeout=WAIT_MS)
    assert not dest.read_bytes().startswith(b"\xef\xbb\xbf")


def test_window_layout_and_view_choices_are_remembered(qtbot, make_window, catalog_dir, tmp_path):
    ui_file = tmp_path / "remembered.ini"
    window = make_window([catalog_dir], ui_file=ui_file)
    window.resize(760, 640)
    window.filters.k.setValue(33)
    window.filters.set_threshold(0.42)
    window.filters.hide_below.setChecked(True)
    window.filters.set_sort("date")
    window.zoom.setValue(0)
    window.filters.select_folder(str(catalog_dir))
    close_window(qtbot, window)

    again = make_window(ui_file=ui_file)

    assert (again.width(), again.height()) == (760, 640)
    assert again.filters.k.value() == 33
    assert again.filters.threshold_value == 0.42
    assert again.filters.hide_below.isChecked()
    assert again.filters.sort_key == "date" and again.filters.descending
    assert again.results_view.icon_size == 96
    assert again.filters.folder.currentData() == str(catalog_dir)


def test_settings_dialog_saves_settings_to_the_library_settings_file(qtbot, library_window, settings):
    dialog = library_window.library_actions.open_settings()
    dialog.thumbnail_size.setValue(192)

    with qtbot.waitSignal(library_window.session.opened, timeout=WAIT_MS):
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()

    saved = Settings.load(settings.data_dir)
    assert saved.thumbnail_size == 192
    assert library_window.session.settings.thumbnail_size == 192
    assert library_window.session.library.settings.thumbnail_size == 192


def test_settings_dialog_shows_why_weights_cannot_be_used_and_stays_open(qtbot, library_window):
    dialog = library_window.library_actions.open_settings()
    dialog.pretrained.setCurrentText("no-such-weights")

    with qtbot.waitSignal(dialog.modelChecked, timeout=WAIT_MS) as blocker:
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()

    assert blocker.args == [False]
    assert "unknown pretrained weights 'no-such-weights'" in dialog.message.text()
    assert dialog.isVisible()
    assert dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    assert library_window.session.settings.pretrained == "none"  # nothing changed
    dialog.reject()


def _accept_and_switch_now(qtbot, window, dialog, key_matches) -> str:
    """OK the settings dialog, answer "Switch now" to the offer, wait for the switch to end;
    returns the offer's text."""
    window.dialogs.answers["Switch the library's model?"] = "Switch now"
    with qtbot.waitSignal(window.session.opened, timeout=WAIT_MS):
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: any(t == "Switch the library's model?" for t, _ in window.dialogs.asked),
                    timeout=WAIT_MS)  # fmt: skip
    qtbot.waitUntil(lambda: key_matches(window.session.snapshot.status.model_key), timeout=WAIT_MS)
    assert window.session.snapshot.status.stats.embedded_current == 12
    return next(text for title, text in window.dialogs.asked if title == "Switch the library's model?")


def test_changing_the_model_offers_to_switch_the_library_to_it(qtbot, library_window, settings, tmp_path):
    weights = tmp_path / "tiny-weights.pt"
    embedder = library_window.session.library.embedder.load()
    torch.save(embedder._model.state_dict(), weights)
    dialog = library_window.library_actions.open_settings()
    dialog.pretrained.setCurrentText(str(weights))

    offer = _accept_and_switch_now(qtbot, library_window, dialog, lambda key: key.startswith("vf-tiny/file:"))
    assert "Embed the library's 12 images with vf-tiny" in offer
    assert f'pretrained = "{weights}"' in settings.settings_path.read_text(encoding="utf-8")


def test_choosing_int8_offers_a_switch_that_re_embeds_the_library_in_int8(qtbot, library_window, settings):
    dialog = library_window.library_actions.open_settings()
    dialog.precision.setCurrentIndex(dialog.precision.findData("int8"))

    offer = _accept_and_switch_now(qtbot, library_window, dialog, lambda key: key.endswith("/int8"))
    assert "with vf-tiny (none, int8)" in offer
    assert 'model_precision = "int8"' in settings.settings_path.read_text(encoding="utf-8")


def test_changing_the_metric_rebuilds_the_index_without_embedding_again(qtbot, library_window):
    dialog = library_window.library_actions.open_settings()
    dialog.metric_box.setCurrentIndex(dialog.metric_box.findData("l2"))

    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()

    qtbot.waitUntil(lambda: library_window.session.snapshot.status.metric == "l2", timeout=WAIT_MS)
    assert library_window.session.snapshot.status.index_count == 12
    assert library_window.session.library.metric == "l2"


def test_settings_dialog_offers_open_clip_models_and_their_weights(qtbot, library_window):
    dialog = library_window.library_actions.open_settings()
    qtbot.waitUntil(lambda: dialog.model.findText("ViT-L-14") >= 0, timeout=WAIT_MS)

    dialog.model.setCurrentText("ViT-B-32-256")

    qtbot.waitUntil(lambda: dialog.pretrained.findText("datacomp_s34b_b86k") >= 0, timeout=WAIT_MS)
    assert dialog.pretrained.currentText() == "none"  # what the user had stays chosen
    dialog.reject()


def test_results_offer_a_refresh_when_the_library_changes_under_them(
    qtbot, library_window, catalog_dir, tmp_path
):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0001.jpg"))])
    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))
    assert library_window.stale_button.isHidden()
    more = tmp_path / "more"
    make_catalog(more, 3, start_seed=70)

    (job,) = library_window.library_actions.add_folders([str(more)])
    qtbot.waitUntil(lambda: not library_window.stale_button.isHidden(), timeout=WAIT_MS)
    response = search_and_wait(qtbot, library_window, library_window.stale_button.click)

    assert len(response.results) == 15
    assert library_window.stale_button.isHidden()


def test_settings_dialog_shows_the_weights_download_progress(library_window):
    dialog = library_window.library_actions.open_settings()
    dialog._set_busy(True, "Loading ViT-B-32-256 (datacomp_s34b_b86k)…")

    show_progress(dialog.progress, Progress("downloading model", 150_000_000, 600_000_000))

    assert not dialog.progress.isHidden()
    assert dialog.progress.value() == 250
    assert dialog.progress.format() == "Downloading the weights: 150 of 600 MB"
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    dialog.reject()
