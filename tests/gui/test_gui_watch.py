"""The folder watcher in the app: real file changes, indexed while the window is open."""

from __future__ import annotations

import shutil

from guihelpers import WAIT_MS, close_window, drop, search_and_wait, shown_paths
from PySide6.QtCore import QMimeData, Qt, QUrl

from visualfinder.gui.folders_panel import COL_WATCH


def watching(window) -> bool:
    return window.watcher_label.text() == "Watching 1 folder"


def test_a_file_copied_into_a_watched_folder_is_indexed_while_the_app_runs(
    qtbot, library_window, catalog_dir
):
    qtbot.waitUntil(lambda: watching(library_window), timeout=WAIT_MS)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0003.jpg"))])
    search_and_wait(qtbot, library_window, lambda: drop(library_window, mime))

    copy = catalog_dir / "new arrival.jpg"
    shutil.copyfile(catalog_dir / "product_0003.jpg", copy)

    qtbot.waitUntil(lambda: library_window.session.snapshot.images == 13, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not library_window.stale_button.isHidden(), timeout=WAIT_MS)
    search_and_wait(qtbot, library_window, library_window.stale_button.click)
    assert str(copy) in shown_paths(library_window)[:2]  # the same picture: as similar as the query
    assert library_window.folders_panel.item_for(str(catalog_dir)).text(1) == "13"


def test_pausing_the_watcher_defers_changes_until_it_runs_again(qtbot, library_window, catalog_dir):
    qtbot.waitUntil(lambda: watching(library_window), timeout=WAIT_MS)
    session = library_window.session

    library_window.activity.action.setChecked(False)
    qtbot.waitUntil(lambda: not session.watching, timeout=WAIT_MS)
    assert library_window.watcher_label.text() == "Not watching"
    with qtbot.assertNotEmitted(session.libraryChanged, wait=1500):
        shutil.copyfile(catalog_dir / "product_0001.jpg", catalog_dir / "while paused.jpg")

    library_window.activity.action.setChecked(True)  # on start it catches up with what changed
    qtbot.waitUntil(lambda: session.snapshot.images == 13, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: watching(library_window), timeout=WAIT_MS)


def test_unticked_folders_are_not_watched_and_closing_stops_the_watcher(qtbot, library_window, catalog_dir):
    qtbot.waitUntil(lambda: watching(library_window), timeout=WAIT_MS)
    library_window.folders_panel.item_for(str(catalog_dir)).setCheckState(COL_WATCH, Qt.CheckState.Unchecked)
    qtbot.waitUntil(lambda: library_window.watcher_label.isHidden(), timeout=WAIT_MS)  # nothing to watch
    session = library_window.session
    assert session.watching  # the watcher runs, following no folder

    close_window(qtbot, library_window)

    assert not session.watching


def test_the_status_bar_shows_the_live_sync_to_a_configured_cluster(
    make_window, settings, catalog_dir, qtbot, osmem_clone
):
    live = settings.replace(remote_url=osmem_clone.url, remote_push_delay_s=0.05)
    window = make_window([catalog_dir], settings_=live)
    qtbot.waitUntil(lambda: window.sync_label.text() == "Synced", timeout=WAIT_MS)
    assert window.sync_label.isVisible() and osmem_clone.url in window.sync_label.toolTip()
    assert window.session.library.remote.pending() == 0


def test_no_sync_label_without_a_cluster(library_window):
    assert library_window.sync_label.isHidden()
