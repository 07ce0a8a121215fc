"""One measurement of the duplicates window, in a fresh process with the tree on PYTHONPATH.

    python duplicates_probe.py DATA_DIR  ->  one JSON line

Opens the library in the real main window (offscreen), loads the model, then triggers Edit >
Find duplicates... and ticks a 5 ms timer on the GUI thread until the search is complete:
seconds to the first groups on screen and to the complete list, and every wait between ticks.
Runs against any checkout (it uses only the window's public attributes).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(data_dir: Path) -> dict:
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from visualfinder.config import Settings
    from visualfinder.gui.main_window import MainWindow
    from visualfinder.gui.session import LibrarySession

    app = QApplication([])
    settings = Settings.load(data_dir, model="vf-tiny", pretrained="none", device="cpu", backend="torch")
    session = LibrarySession(settings)
    session.watch = False
    window = MainWindow(
        session, QSettings(str(data_dir.parent / f"ui-{os.getpid()}.ini"), QSettings.Format.IniFormat)
    )
    window.show()

    def wait(ready, limit: float = 600.0) -> None:
        end = time.monotonic() + limit
        while not ready():
            if time.monotonic() > end:
                raise TimeoutError("the window did not get there in time")
            app.processEvents()
            time.sleep(0.001)

    session.open()
    wait(lambda: session.is_open and not session.background.busy and not session.writer.busy)
    end = time.monotonic() + 1.0  # settle
    wait(lambda: time.monotonic() > end)
    gaps: list[float] = []
    tick = QElapsedTimer()
    timer = QTimer(interval=5)
    timer.timeout.connect(lambda: gaps.append(tick.restart()))
    tick.start()
    timer.start()
    start = time.perf_counter()
    window.duplicates_action.trigger()
    view = window.review_actions.duplicates_window
    wait(lambda: view.model.rowCount() > 0 and bool(view.cards))
    first = time.perf_counter() - start
    wait(lambda: view.report is not None)
    complete = time.perf_counter() - start
    timer.stop()
    result = {"first_s": first, "complete_s": complete, "gaps_ms": gaps, "groups": len(view.report.groups)}
    window.close()
    wait(lambda: session.state == "shut", 120)
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
