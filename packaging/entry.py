"""The frozen app's entry point: the same `main` as the `visualfinder` command."""

import multiprocessing
import sys

from visualfinder.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # torch and the pools may spawn helpers on Windows/macOS
    sys.exit(main())
