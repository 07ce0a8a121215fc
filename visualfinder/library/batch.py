"""Batch match: every photo of a folder against the catalog, the top k matches of each.

Photos are decoded (with the indexing limits, like a photo dropped on the app) and preprocessed
on the indexing pipeline's decode pool (`ingest/workpool.WorkerPool` through
`pipeline.prepare_ahead`: a bounded look-ahead and the per-file time limit), embedded in batches
with the embedder's batch call, and each searched as one `SearchRequest` (its vector) by
`Library.search`, the one planner. A photo that cannot be read (corrupt, too large, not an image,
or still decoding at the time limit) is reported with its reason and the batch goes on;
progress is reported per photo and the cancel token is checked between photos and while
waiting for a decode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
from visualfinder.ingest.pipeline import prepare_ahead
from visualfinder.ingest.workpool import WorkerPool
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


@dataclass
class PhotoEncoder:
    """How photos become query vectors: `prepare` decodes and preprocesses one file (raising a
    VisualFinderError for a photo that cannot be used), `embed` embeds a batch of prepared photos."""

    prepare: Callable[[str], object]
    embed: Callable[[Sequence[object]], np.ndarray]
    batch_size: int = 32
    workers: int = 1
    time_limit: float | None = None


def match_photos(
    search: Callable[[SearchRequest], SearchResponse],
    photos: list[str],
    k: int,
    encoder: PhotoEncoder,
    *,
    filters: Filters | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Iterator[PhotoMatches]:
    """Match each photo with `search` (Library.search), in order, yielding a batch at a time."""
    total = len(photos)
    done = 0
    progress(Progress("matching photos", 0, total))

    def prepared(photo: str) -> tuple[str, object, str | None]:
        try:
            return photo, encoder.prepare(photo), None
        except _FATAL:
            raise
        except VisualFinderError as exc:  # this photo only: corrupt, too large, unreadable
            return photo, None, str(exc)

    def too_long(photo: str) -> tuple[str, object, str | None]:
        return (
            photo,
            None,
            f"cannot use {photo} as a query image: still decoding after {encoder.time_limit:g} s",
        )

    def answer(batch: list[tuple[str, object, str | None]]) -> Iterator[PhotoMatches]:
        nonlocal done
        pixels = [p for _, p, error in batch if error is None]
        vectors = iter(encoder.embed(pixels) if pixels else [])
        for photo, _, error in batch:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if error is None:
                request = SearchRequest(
                    [QueryTerm("vector", next(vectors))], k=k, filters=filters or Filters()
                )
                try:
                    yield PhotoMatches(photo, search(request).results)
                except _FATAL:
                    raise
                except VisualFinderError as exc:
                    yield PhotoMatches(photo, error=str(exc))
            else:
                yield PhotoMatches(photo, error=error)
            done += 1
            progress(Progress("matching photos", done, total, Path(photo).name))

    pool = WorkerPool(max(1, encoder.workers), "vf-batch-decode")
    try:
        batch: list[tuple[str, object, str | None]] = []
        ahead = max(2 * encoder.batch_size, 4 * encoder.workers)
        for item in prepare_ahead(pool, ((p,) for p in photos), prepared, too_long, cancel,
                                  ahead=ahead, limit=encoder.time_limit):  # fmt: skip
            batch.append(item)
            if sum(1 for _, _, error in batch if error is None) >= encoder.batch_size:
                yield from answer(batch)
                batch = []
        yield from answer(batch)
    finally:
        pool.shutdown(wait=False)
    progress(Progress("matching photos", total, total))
