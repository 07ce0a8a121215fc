"""Paths as the catalog keeps them: the one normalisation of what users type, and subtree tests."""

from __future__ import annotations

import os

# Written into every data folder: the folder walk never catalogues a library's own thumbnails,
# even when the data folder sits inside a catalog folder.
LIBRARY_MARKER = ".visualfinder-library"


def normalise(path: str | os.PathLike) -> str:
    """Absolute, with `~` expanded; links are kept as given (the catalog records the user's paths)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def is_within(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies below it (both normalised)."""
    folder = folder.rstrip(os.sep) + os.sep
    return path == folder[:-1] or path.startswith(folder)
