"""Batch match: every photo of a folder against the catalog, the top k matches of each.

Each photo is one `SearchRequest` answered by `Library.search`, so it is decoded with the
indexing limits and searched by the one planner, like a photo dropped on the app. A photo that
cannot be read (corrupt, too large, not an image) is reported with its reason and the batch goes
on; progress is reported per photo and the cancel token is checked between photos.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from visualfinder.catalog.filters import Filters
from visualfinder.errors import (
    Cancelled,
    EmptyLibraryError,
    FolderNotFoundError,
    ModelMismatchError,
    ModelUnavailableError,
    VisualFinderError,
)
from visualfinder.ingest.imaging import is_candidate_name
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.paths import normalise
from visualfinder.search.planner import SearchResult
from visualfinder.search.request import QueryTerm, SearchRequest, SearchResponse

# Errors about the library or the model, not the photo: the batch stops on these.
_FATAL = (Cancelled, EmptyLibraryError, ModelMismatchError, ModelUnavailableError)


@dataclass
class PhotoMatches:
    """One photo's matches, best first, or the reason it could not be matched."""

    photo: str
    results: list[SearchResult] = field(default_factory=list)
    error: str | None = None

    @property
    def best(self) -> SearchResult | None:
        return self.results[0] if self.results else None

    def to_json(self) -> dict:
        return {"photo": self.photo, "error": self.error, "matches": [r.to_json() for r in self.results]}


@dataclass
class BatchReport:
    folder: str
    k: int
    matches: list[PhotoMatches]

    @property
    def failed(self) -> list[PhotoMatches]:
        return [m for m in self.matches if m.error]

    def to_json(self) -> dict:
        return {"folder": self.folder, "k": self.k, "photos": [m.to_json() for m in self.matches]}


def photos_in(folder: str | os.PathLike, recursive: bool = False) -> list[str]:
    """The image files of `folder` (by name, as the scanner picks them), sorted."""
    root = normalise(folder)
    if not os.path.isdir(root):
        raise FolderNotFoundError(f"not a folder: {folder}")
    found: list[str] = []
    if recursive:
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            found += [os.path.join(directory, n) for n in names if is_candidate_name(n)]
    else:
        with os.scandir(root) as entries:
            found = [e.path for e in entries if is_candidate_name(e.name) and e.is_file()]
    return sorted(found)


def match_photos(
    search: Callable[[SearchRequest], SearchResponse],
    photos: list[str],
    k: int,
    *,
    filters: Filters | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Iterator[PhotoMatches]:
    """Match each photo with `search` (Library.search), yielding as it goes."""
    total = len(photos)
    for done, photo in enumerate(photos):
        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(Progress("matching photos", done, total, Path(photo).name))
        request = SearchRequest([QueryTerm("image", photo)], k=k, filters=filters or Filters())
        try:
            yield PhotoMatches(photo, search(request).results)
        except _FATAL:
            raise
        except VisualFinderError as exc:  # this photo only: corrupt, too large, unreadable
            yield PhotoMatches(photo, error=str(exc))
    progress(Progress("matching photos", total, total))
