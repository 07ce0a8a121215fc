"""The desktop app (PySide6): a thin Qt shell over `library.facade.Library`. Start it with `gui.app.run_app`."""
