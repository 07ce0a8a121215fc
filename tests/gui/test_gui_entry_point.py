"""`visualfinder` with no command opens the app; Ctrl+C (SIGINT) closes it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import visualfinder
from visualfinder.library.facade import CATALOG_FILE


def test_visualfinder_without_a_command_opens_the_app_and_closes_on_ctrl_c(data_dir, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(visualfinder.__file__).resolve().parent.parent)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # the app's QSettings go here, not to ~/.config
    process = subprocess.Popen(
        [sys.executable, "-m", "visualfinder", "--data-dir", str(data_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # The window opens the library on a worker: the catalog appears once the app is running.
        while not (data_dir / CATALOG_FILE).exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.2)
        assert (data_dir / CATALOG_FILE).exists()
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    assert (tmp_path / "config" / "visualfinder" / "visualfinder.ini").exists()  # window state saved
