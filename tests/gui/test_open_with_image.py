"""`visualfinder photo.jpg` opens the app and searches the library with that photo."""

from __future__ import annotations

from pathlib import Path

from apprunner import drive, main_window
from guihelpers import WAIT_MS, shown_paths
from imagegen import make_catalog

from visualfinder.cli import main as cli


def test_visualfinder_with_an_image_opens_the_app_with_that_image_as_the_query(qtbot, library, tmp_path):
    catalog = make_catalog(tmp_path / "catalog", 8)
    library.index([tmp_path / "catalog"])
    library.close()
    query = catalog[5]

    def script() -> None:
        qtbot.waitUntil(lambda: main_window() is not None, timeout=WAIT_MS)
        window = main_window()
        qtbot.waitUntil(lambda: window.response is not None, timeout=WAIT_MS)
        assert window.query is not None and window.query.source.path == str(query)
        assert Path(shown_paths(window)[0]) == query  # the photo itself is in the catalog: best match
        window.close()

    assert drive(lambda: cli.main(["--data-dir", str(library.settings.data_dir), str(query)]), script) == 0
