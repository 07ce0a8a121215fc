"""Run the real `run_app` (or `cli.main`) in this process and drive its window from a timer,
because `app.exec()` blocks until the window closes."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from visualfinder.gui.main_window import MainWindow


def main_window() -> MainWindow | None:
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    return windows[-1] if windows else None


def drive(start: Callable[[], int], script: Callable[[], None]) -> int:
    """Call `start()` (which runs the event loop); `script` runs inside that loop and must end
    by closing the window. An exception in the script closes the window and is raised here."""
    failures: list[BaseException] = []

    def run_script() -> None:
        try:
            script()
        except BaseException as exc:  # re-raised below, once the app has returned
            failures.append(exc)
            window = main_window()
            if window is not None:
                window.close()

    QTimer.singleShot(0, run_script)
    code = start()
    if failures:
        raise failures[0]
    return code
