"""GUI fixtures: a real MainWindow on a real library (vf-tiny), offscreen, with scripted dialogs.

Dialogs and the desktop (open file, show in folder) are hand-written fakes: a test must never
block on a modal dialog or launch another program. Everything else is real: widgets, drops,
the clipboard, job queues, the catalog and the index.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from guihelpers import WAIT_MS, RecordingDesktop, ScriptedDialogs, close_window
from imagegen import make_catalog
from PySide6.QtCore import QSettings

from visualfinder.gui.main_window import MainWindow
from visualfinder.gui.session import LibrarySession

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def _isolated_qsettings(tmp_path_factory):
    """Nothing a test does may touch the user's own Qt settings."""
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path_factory.mktemp("qsettings"))
    )
    QSettings.setPath(
        QSettings.Format.NativeFormat,
        QSettings.Scope.UserScope,
        str(tmp_path_factory.mktemp("qsettings-native")),
    )


@pytest.fixture
def catalog_dir(tmp_path) -> Path:
    root = tmp_path / "catalog"
    make_catalog(root, 12)
    return root


@pytest.fixture
def make_window(qtbot, settings, tmp_path) -> Callable[..., MainWindow]:
    """Open the app on this test's library; closed (and its workers joined) at teardown."""
    windows: list[MainWindow] = []

    def make(folders: list[Path] = (), settings_=None, ui_file: Path | None = None) -> MainWindow:
        session = LibrarySession(settings_ or settings)
        ui = QSettings(str(ui_file or tmp_path / "ui.ini"), QSettings.Format.IniFormat)
        window = MainWindow(
            session, ui, dialogs=ScriptedDialogs(), desktop=RecordingDesktop(tmp_path / "trash")
        )
        windows.append(window)
        window.show()
        with qtbot.waitSignal(session.snapshotChanged, timeout=WAIT_MS):
            session.open()
        for folder in folders:
            (job,) = window.library_actions.add_folders([str(folder)])
            qtbot.waitUntil(lambda job=job: job.done, timeout=WAIT_MS)
            assert job.state == "succeeded", job.error
        if folders:
            qtbot.waitUntil(lambda: window.session.snapshot.images > 0, timeout=WAIT_MS)
        return window

    yield make
    for window in windows:
        close_window(qtbot, window)


@pytest.fixture
def library_window(make_window, catalog_dir) -> MainWindow:
    """The app on a library of 12 indexed images."""
    return make_window([catalog_dir])
