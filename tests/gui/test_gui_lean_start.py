"""The app on a CPU machine: its start and its searches import neither torch nor open_clip.

In a fresh process (as a user starts it), a real MainWindow offscreen opens a library whose
model (vf-tiny) is prepared for ONNX Runtime, searches by text and by an image file through the
window, and then looks at `sys.modules`. Not timed: what is measured is what gets imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from imagegen import make_catalog, write_image
from procutil import subprocess_env

from visualfinder.models import onnx_backend
from visualfinder.models.embedder import gpu_possible

PROBE = textwrap.dedent(
    """
    import json, sys, time
    from visualfinder.config import Settings
    from visualfinder.gui.app import create_application
    from visualfinder.gui.main_window import MainWindow
    from visualfinder.gui.session import LibrarySession
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest

    heavy = ("torch", "torchvision", "open_clip")
    app = create_application([])
    session = LibrarySession(Settings.load())
    window = MainWindow(session, QSettings(sys.argv[1], QSettings.Format.IniFormat))
    window.show()
    shown = []
    window.resultsShown.connect(lambda response: shown.append(len(response.results)))

    def wait(condition, what, seconds=120):
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    session.open()
    wait(lambda: session.snapshot is not None and session.snapshot.images > 0, "the library")
    loaded = {"start": sorted(m for m in heavy if m in sys.modules)}
    window.search_field.setText("a red leather armchair")
    QTest.keyClick(window.search_field, Qt.Key.Key_Return)
    wait(lambda: len(shown) == 1, "the text search")
    loaded["text search"] = sorted(m for m in heavy if m in sys.modules)
    window.search_file(sys.argv[2])
    wait(lambda: len(shown) == 2, "the image search")
    loaded["image search"] = sorted(m for m in heavy if m in sys.modules)
    window.close()
    wait(lambda: session.state == "shut", "the window to close")
    print(json.dumps({"loaded": loaded, "results": shown}))
    """
)


@pytest.mark.skipif(not onnx_backend.available(), reason="onnxruntime is not installed")
@pytest.mark.skipif(gpu_possible(), reason="a GPU may be here: finding it rightly imports torch")
def test_the_app_starts_and_searches_without_torch(tmp_path: Path, data_dir: Path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 6)
    env = subprocess_env(str(Path(__file__).parent.parent), VISUALFINDER_BACKEND="onnx", VISUALFINDER_DEVICE="auto",
                         QT_QPA_PLATFORM="offscreen")  # fmt: skip
    prepared = subprocess.run([sys.executable, "-m", "visualfinder", "index", str(catalog)],
                              capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    query = write_image(tmp_path / "query.jpg", 3, size=(4000, 3000))
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "ui.ini"), str(query)],
                         capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["results"] == [6, 6]  # both searches ran through the window and showed the library
    assert result["loaded"] == {"start": [], "text search": [], "image search": []}, out.stderr[-3000:]
