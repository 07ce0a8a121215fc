"""Start the desktop app: `visualfinder` with no command calls `run_app(settings)`."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from visualfinder import __version__
from visualfinder.config import ENV_DATA_DIR, Settings, default_data_dir
from visualfinder.gui import icons
from visualfinder.gui.first_run import FirstRun
from visualfinder.gui.main_window import MainWindow
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.ui_state import UiState

log = logging.getLogger(__name__)

ORGANIZATION = "visualfinder"
APPLICATION = "visualfinder"


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with our name, icon, Fusion style and the platform's (light or dark) palette."""
    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APPLICATION)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationDisplayName("visualfinder")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("visualfinder")
    app.setWindowIcon(icons.app_icon())
    apply_style(app)
    app.styleHints().colorSchemeChanged.connect(lambda _: apply_style(app))
    return app


def apply_style(app: QApplication) -> None:
    """Fusion with the platform palette; where the system is dark but the palette is not, a dark one."""
    app.setStyle("Fusion")
    palette = app.style().standardPalette()
    dark = app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    if dark and palette.color(QPalette.ColorRole.Window).lightness() > 128:
        palette = dark_palette()
    app.setPalette(palette)
    icons.clear_cache()


def dark_palette() -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2d30", QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1f2023", QPalette.ColorRole.AlternateBase: "#2b2d30",
        QPalette.ColorRole.ToolTipBase: "#3a3d41", QPalette.ColorRole.ToolTipText: "#f0f0f0",
        QPalette.ColorRole.PlaceholderText: "#8a8d91", QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#35373b", QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.BrightText: "#ff6b6b", QPalette.ColorRole.Highlight: "#3d7fd9",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: "#6ea8fe",
        QPalette.ColorRole.Light: "#45484d", QPalette.ColorRole.Midlight: "#3a3d41",
        QPalette.ColorRole.Mid: "#26282b", QPalette.ColorRole.Dark: "#1b1c1f", QPalette.ColorRole.Shadow: "#111214",
    }  # fmt: skip
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7d8085"))
    return p


def ui_settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def _library_settings(settings: Settings, state: UiState) -> Settings:
    """The data folder chosen in Settings last time, unless --data-dir or the env var names one."""
    chosen = state.data_dir
    explicit = os.environ.get(ENV_DATA_DIR) or settings.data_dir != default_data_dir()
    if chosen and not explicit and Path(chosen) != settings.data_dir:
        return Settings.load(chosen)
    return settings


def _open_or_quit(
    window: MainWindow, session: LibrarySession, settings: Settings, chosen: Settings | None
) -> None:
    """After the first-run check: open the library (saving settings the user chose), or quit."""
    if chosen is None:
        window.close()
    elif session.state == "closed":
        session.open(None if chosen is settings else chosen)


def run_app(settings: Settings, query_path: str | os.PathLike | None = None) -> int:
    """Open the main window on the library of `settings`; returns the exit code.

    `query_path`: an image to search with as soon as the library is open."""
    app = create_application()
    state_store = ui_settings()
    settings = _library_settings(settings, UiState(state_store))
    session = LibrarySession(settings)
    window = MainWindow(session, state_store)
    window.show()
    first_run = FirstRun(settings, session.background, window.dialogs, window)
    first_run.done.connect(lambda chosen: _open_or_quit(window, session, settings, chosen))
    first_run.start()
    if query_path is not None:
        window.search_file(query_path)  # searched as soon as the library is open
    # Ctrl+C in the terminal closes the window the normal way (work stops, the index is saved).
    # Python sees the signal only when it runs, so a timer wakes it now and then.
    previous = signal.signal(signal.SIGINT, lambda *_: window.close())
    interrupt_timer = QTimer(interval=250)
    interrupt_timer.timeout.connect(lambda: None)
    interrupt_timer.start()
    try:
        code = int(app.exec())
    finally:
        interrupt_timer.stop()
        signal.signal(signal.SIGINT, previous)
    if session.left_behind():
        # A model download cannot be interrupted. The library is closed and saved, so leave
        # now rather than let interpreter shutdown tear down a thread inside torch or a download.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
