"""The frozen app's entry point: the same `main` as the `visualfinder` command."""

import multiprocessing
import os
import sys

from visualfinder.cli.main import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # torch and the pools may spawn helpers on Windows/macOS
    # The windowed executable (Windows, macOS) has no console: sys.stdout/stderr are None, and
    # progress bars or log handlers writing to them would fail.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - for the process
    sys.exit(main())
