"""The desktop app (PySide6): a thin Qt shell over `service.Library`. Start it with `gui.app.run_app`."""
