"""Library: the one facade the CLI, the app, the watcher and the HTTP API go through.

It is a facade over collaborators, each a plain class that receives what it uses:

- `LiveIndex` (live_index): the engine that answers searches and every rule that keeps the
  vector index equal to the catalog (locks, catch-up, save, load, rebuild);
- `Indexer` (indexing): folders and changed paths through the one indexing pipeline;
- `QueryEncoder` (queries): query terms into one query vector;
- the features: `products` (metadata and tags), `duplicates`, `models` (model and metric
  switches), `remote` (OpenSearch), and `status()` (status).

`open_library(settings)` is the composition root: it opens the catalog, picks the library's
model and metric, and builds the collaborators around one LiveIndex.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from visualfinder.catalog.filters import Filters
from visualfinder.catalog.records import Folder, ImageRecord, ModelRef
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import (
    EmptyLibraryError,
    FolderNotFoundError,
    ModelMismatchError,
    QueryError,
    SettingsError,
    StorageError,
)
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.jobs import CancelToken, JobList, ProgressCallback, no_progress
from visualfinder.library.live_index import LiveIndex
from visualfinder.library.products import Products
from visualfinder.library.queries import QueryEncoder
from visualfinder.library.status import FolderStatus, LibraryStatus, library_status
from visualfinder.models.embedder import Embedder, model_key, precision_of_key
from visualfinder.paths import LIBRARY_MARKER, normalise
from visualfinder.search.planner import SearchResult
from visualfinder.search.query_bar import ParsedQuery, parse_query
from visualfinder.search.request import QueryTerm, SearchRequest, SearchResponse
from visualfinder.search.vector_index import VectorIndex

if TYPE_CHECKING:  # built on first use: a search loads neither the indexing pipeline nor the rest
    from visualfinder.ingest.imaging import DecodedImage
    from visualfinder.ingest.pipeline import IndexReport
    from visualfinder.ingest.scanner import FileStat
    from visualfinder.library.batch import BatchReport, PhotoEncoder, PhotoMatches
    from visualfinder.library.duplicates import Duplicates
    from visualfinder.library.indexing import Indexer
    from visualfinder.library.models import Models
    from visualfinder.library.remote import Remote

_Part = TypeVar("_Part")

# The records of the Library's API, importable with it.
__all__ = [
    "FolderStatus",
    "Library",
    "LibraryStatus",
    "QueryTerm",
    "SearchRequest",
    "SearchResponse",
    "open_library",
]

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.db"
# How long a search on an empty index waits for this library's writer to catch up with the catalog.
_EMPTY_INDEX_WAIT_S = 30.0

ImageRef = int | str | os.PathLike


class Library:
    """A catalog of product images and everything that can be done with it."""

    def __init__(self, settings: Settings, catalog: Catalog, live: LiveIndex):
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self.events = EventHub()
        self.jobs = JobList()
        self.queries = QueryEncoder(settings, catalog)
        self.products = Products(catalog, self.events)
        # The other collaborators are built (and their modules imported) when first used: a
        # one-shot `search` never pays for the indexing pipeline, duplicates or OpenSearch.
        self._parts: dict[str, object] = {}
        self._parts_lock = threading.RLock()  # a part may build another (duplicates: the indexer)

    def _part(self, name: str, build: Callable[[], _Part]) -> _Part:
        part = self._parts.get(name)
        if part is None:
            with self._parts_lock:
                part = self._parts.get(name)
                if part is None:
                    part = self._parts[name] = build()
        return part  # type: ignore[return-value]

    @property
    def indexer(self) -> Indexer:
        def build() -> Indexer:
            from visualfinder.library.indexing import Indexer

            return Indexer(self.settings, self.catalog, self.live, self.events)

        return self._part("indexer", build)

    @property
    def duplicates(self) -> Duplicates:
        def build() -> Duplicates:
            from visualfinder.library.duplicates import Duplicates
            from visualfinder.library.duplicates_worker import DuplicatesWorker

            return Duplicates(self.settings, self.catalog, self.live, self.events, self.indexer,
                              DuplicatesWorker(self.settings, open_library))  # fmt: skip

        return self._part("duplicates", build)

    @property
    def models(self) -> Models:
        def build() -> Models:
            from visualfinder.library.models import Models

            return Models(self.settings, self.catalog, self.live, self.indexer, self.events, self.jobs)

        return self._part("models", build)

    @property
    def remote(self) -> Remote:
        def build() -> Remote:
            from visualfinder.library.remote import Remote

            return Remote(self.settings, self.catalog, self.live)

        return self._part("remote", build)

    # --- what the library is -------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def index_path(self) -> Path:
        return self.live.path

    @property
    def thumbs_dir(self) -> Path:
        return self.indexer.thumbs_dir

    @property
    def embedder(self) -> Embedder:
        """The active model's embedder (the one queries and indexing use)."""
        return self.live.engine.embedder

    @property
    def vector_index(self) -> VectorIndex:
        return self.live.engine.index

    @property
    def metric(self) -> str:
        return self.live.engine.metric

    @property
    def model(self) -> ModelRef:
        """The library's active model: its vectors fill the index."""
        return self.live.engine.model

    @property
    def model_key(self) -> str:
        return self.live.engine.model.key

    @property
    def requested_model(self) -> ModelRef:
        """The model the settings ask for; differs from `model` until a switch to it completes."""
        s = self.settings
        return ModelRef(s.model, s.pretrained, model_key(s.model, s.pretrained, s.model_precision))

    @property
    def index_health(self) -> str:
        """How the index came up on open: "ok", "caught up" or "rebuilt"."""
        return self.live.health

    def status(self, error_limit: int | None = 50) -> LibraryStatus:
        return library_status(self.settings, self.catalog, self.live, self.requested_model, error_limit)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop background jobs, save pending index changes (if we may write), release the catalog."""
        self.jobs.stop_all()
        if "duplicates" in self._parts:
            self.duplicates.close()  # its worker process, if a search started one
        try:
            self.live.close()
        finally:
            if "remote" in self._parts:
                self.remote.close()
            self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- folders -------------------------------------------------------------------------

    def folders(self) -> list[Folder]:
        return self.catalog.folders()

    def watched_folders(self) -> list[Folder]:
        """The catalog folders marked watched: what a `watcher.Watcher` follows."""
        return [f for f in self.catalog.folders() if f.watched]

    def add_folders(self, paths: Sequence[str | os.PathLike], watched: bool | None = None) -> list[Folder]:
        """Register folders (validated first: nothing is added if one is missing)."""
        resolved = []
        for path in paths:
            full = normalise(path)
            if not os.path.exists(full):
                raise FolderNotFoundError(f"folder not found: {path}")
            if not os.path.isdir(full):
                raise FolderNotFoundError(f"not a folder: {path} (give the folder that holds the images)")
            resolved.append(full)
        with self.live.writing_here():
            return [self.catalog.add_folder(p, watched) for p in resolved]

    def remove_folder(self, path: str | os.PathLike) -> int:
        """Forget a catalog folder and its images (the files on disk are not touched)."""
        folder = self._folder(path)
        with self.live.writing():
            removed = self.catalog.remove_folder(folder.id)
            self.vector_index.remove(removed)
            self.vector_index.generation = self.catalog.generation
            self.live.save()
        self.events.emit(LibraryChanged(None, "folders"))
        return len(removed)

    def set_watched(self, path: str | os.PathLike, watched: bool) -> Folder:
        folder = self._folder(path)
        self.catalog.set_folder_watched(folder.id, watched)
        self.events.emit(LibraryChanged(None, "folders"))
        return self.catalog.folder_by_path(folder.path)

    def _folder(self, path: str | os.PathLike) -> Folder:
        folder = self.catalog.folder_by_path(normalise(path))
        if folder is None:
            raise FolderNotFoundError(f"not a catalog folder: {path}")
        return folder

    # --- indexing ------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | os.PathLike] | None = None,
        *,
        watched: bool | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        source: str = "index",
        retry_skipped: bool = False,
    ) -> IndexReport:
        """Add `paths` as folders (if given) and bring them, or every folder, up to date.

        `source` names the caller in the LibraryChanged event ("index", "watcher", ...).
        Skipped files are tried again when they changed or, for a transient failure, when due
        (ingest/retry.py); `retry_skipped=True` tries every one (`index --retry-skipped`, the
        app's "Retry skipped").
        """
        roots = self.add_folders(paths, watched) if paths else self.catalog.folders()
        return self.indexer.run(roots, progress, cancel, source, retry_skipped)

    def index_paths(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        accept: Callable[[FileStat], bool] | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        source: str = "watcher",
        save_index: bool = True,
        wait: float = 0.0,
        hold_removals: bool = True,
    ) -> IndexReport:
        """Bring just these paths (files or folders, present or gone) up to date: the watcher's way in.

        The same stat diff and the same pipeline as `index`, limited to what changed. A move
        keeps its id when both of its ends are among `paths`, or when its source file has
        vanished. `accept` may hold back files still being written (see `scanner.scan_paths`);
        removals then wait with them (`hold_removals`): a held-back file may be where a missing
        one went. Both come back in `report.deferred` for the caller to retry. Metadata sidecars
        named in `paths`, or next to a new image, are applied as `index` applies them.
        `save_index=False` leaves the vector index file for a later `save_index()` while more
        work is queued; `wait` is how long to wait for another process writing the library
        before raising LibraryBusyError.
        """
        return self.indexer.run_paths(
            [normalise(p) for p in paths], accept=accept, progress=progress, cancel=cancel, source=source,
            save_index=save_index, wait=wait, hold_removals=hold_removals,
        )  # fmt: skip

    def save_index(self, wait: float = 5.0) -> bool:
        """Write pending vector-index changes to disk; False when there were none."""
        return self.live.save_pending(wait)

    def rebuild_index(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """Rebuild the vector index from the catalog's stored embeddings (no re-embedding) and save it."""
        count = self.live.rebuild(progress, cancel)
        self.events.emit(LibraryChanged(None, "rebuild"))
        return count

    # --- search --------------------------------------------------------------------------

    def parse_query(self, text: str) -> ParsedQuery:
        """Split query-bar text into filters (for SQLite) and words for CLIP (`parsed.terms()`),
        knowing this library's extra metadata fields."""
        return parse_query(text, set(self.products.metadata_fields()))

    def search(self, request: SearchRequest) -> SearchResponse:
        """Answer a query: combine its terms into one vector and run the planner (local or remote)."""
        started = time.perf_counter()
        live = self.live
        live.follow_catalog()
        if request.k < 1:
            raise QueryError("k must be at least 1")
        if request.remote:
            engine = live.engine
            query = self.queries.query_vector(request.terms, engine.embedder, engine.model.key)
            results, plan = self.remote.searcher().search(query, request.k, request.filters, request.exact)
            return SearchResponse(results, plan, time.perf_counter() - started)
        live.catch_up()
        if len(live.index) == 0:
            # Nothing to search yet here, while the catalog may have vectors that another
            # library committed: this one time, wait for this library's writer and catch up.
            live.catch_up(wait_s=_EMPTY_INDEX_WAIT_S)
        engine = live.engine
        if len(engine.index) == 0:
            stats = self.catalog.stats(engine.model.key)
            if stats.needs_embedding:
                raise ModelMismatchError(
                    f"the library's {stats.needs_embedding} images were embedded with another model; "
                    f"run `visualfinder index` to embed them with {engine.model.key}"
                )
            raise EmptyLibraryError(
                "the library has no indexed images yet; add a folder first (visualfinder index FOLDER)"
            )
        if not request.terms:
            if request.filters.is_empty():
                raise QueryError("nothing to search for: give an image, a text or a filter")
            results, plan = engine.planner.browse(request.k, request.filters)
        else:
            query = self.queries.query_vector(request.terms, engine.embedder, engine.model.key)
            results, plan = engine.planner.search(query, request.k, request.filters, request.exact)
        return SearchResponse(results, plan, time.perf_counter() - started)

    def match_folder(
        self,
        folder: str | os.PathLike,
        k: int = 5,
        *,
        recursive: bool = False,
        filters: Filters | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> BatchReport:
        """Batch match: the top `k` catalog matches of each photo in `folder`; a photo that cannot
        be read is reported in its entry (library/batch.py)."""
        if k < 1:
            raise QueryError("k must be at least 1")
        from visualfinder.library.batch import BatchReport, match_photos, photos_in

        photos = photos_in(folder, recursive)
        encoder = self._photo_encoder()
        matches = list(
            match_photos(self.search, photos, k, encoder, filters=filters, progress=progress, cancel=cancel)
        )
        return BatchReport(normalise(folder), k, matches)

    def _photo_encoder(self) -> PhotoEncoder:
        """Batch match's photos as the pipeline prepares files: decoded with the indexing limits
        and preprocessed on its decode threads, embedded in the model's batches."""
        from visualfinder.ingest.pipeline import default_decode_workers
        from visualfinder.library.batch import PhotoEncoder

        self.live.follow_catalog()
        embedder = self.live.engine.embedder
        embedder.load()

        def prepare(photo: str) -> object:
            return embedder.preprocess(self.queries.decode_image_file(photo, embedder).image)

        return PhotoEncoder(prepare, embedder.embed_batch, embedder.batch_size,
                            default_decode_workers(embedder.device), self.settings.file_time_limit_s or None)  # fmt: skip

    def export_batch_csv(
        self, matches: Sequence[PhotoMatches], dest: str | os.PathLike, excel: bool = False
    ) -> Path:
        """Write a batch match to CSV: photo, rank, sku, title, score, path."""
        from visualfinder.products.export import write_batch_csv

        try:
            return write_batch_csv(matches, dest, excel=excel)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc

    # --- query images (decoded as indexing decodes, with its limits) ----------------------

    def decode_query_image(self, path: str | os.PathLike, min_side: int | None = None) -> DecodedImage:
        """Decode a query image file; `min_side` asks for more pixels than the model needs (display)."""
        return self.queries.decode_image_file(path, self.embedder, min_side)

    def decode_query_bytes(self, data: bytes, name: str, min_side: int | None = None) -> DecodedImage:
        """Decode query image data that is not a file (pasted, dropped, uploaded)."""
        return self.queries.decode_image_bytes(data, name, self.embedder, min_side)

    def fetch_query_image(self, url: str, min_side: int | None = None) -> DecodedImage:
        """Download a query image (size limit, timeout, content-type check) and decode it."""
        return self.queries.fetch_image(url, self.embedder, min_side)

    # --- images --------------------------------------------------------------------------

    def image_id(self, ref: ImageRef) -> int:
        """The catalog id of an image given by id or path (QueryError if it is not in the library)."""
        return self.catalog.image_id(ref)

    def record(self, ref: ImageRef) -> ImageRecord:
        """An image with its product metadata and tags."""
        image_id = self.image_id(ref)
        return self.catalog.records([image_id])[image_id]

    def export_csv(
        self, results: Sequence[SearchResult], dest: str | os.PathLike, excel: bool = False
    ) -> Path:
        """Write results to CSV (the one exporter: CLI, app and API)."""
        from visualfinder.products.export import write_results_csv

        try:
            return write_results_csv(results, dest, excel=excel)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc


def open_library(
    settings: Settings, progress: ProgressCallback = no_progress, *, one_shot: bool = False
) -> Library:
    """Build a Library from settings: open the catalog, prepare the model, load or rebuild the index.

    `one_shot`: the process answers a query and exits (a CLI search): the model is set up to
    start fast rather than to run many batches (see `Embedder`)."""
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        marker = data_dir / LIBRARY_MARKER
        if not marker.exists():
            marker.write_text(
                "visualfinder library data: not scanned as a catalog folder\n", encoding="utf-8"
            )
    except OSError as exc:
        raise SettingsError(f"cannot create the data folder {data_dir}: {exc.strerror or exc}") from exc
    catalog = Catalog(data_dir / CATALOG_FILE)
    try:
        model = _library_model(catalog, settings)
        embedder = Embedder.for_settings(
            settings, model.name, model.pretrained, precision_of_key(model.key), one_shot=one_shot
        )
        metric = catalog.meta("metric")
        if metric is None:  # a new library takes the configured metric and keeps it
            metric = settings.metric
            catalog.set_meta("metric", metric)
        if model.key != embedder.key:  # the weights file was given by another path
            model = ModelRef(embedder.model_name, embedder.pretrained, embedder.key)
        live = LiveIndex(settings, catalog, model, embedder, metric)
        live.open(progress)
        return Library(settings, catalog, live)
    except BaseException:
        catalog.close()
        raise


def _library_model(catalog: Catalog, settings: Settings) -> ModelRef:
    """The model a library uses: the one it recorded, or (a new library) the configured one.

    Like the metric, the model belongs to the library: settings naming another model do not
    change it (that needs a switch, which re-embeds); `status` shows the difference.
    """
    requested = ModelRef(
        settings.model,
        settings.pretrained,
        model_key(settings.model, settings.pretrained, settings.model_precision),
    )
    active = catalog.active_model()
    if active is None or active.key == requested.key:
        if active != requested:  # first open (or the same weights file moved): record it
            catalog.set_active_model(requested)
        return requested
    log.info(
        "the library uses model %s; the settings ask for %s (switch with `visualfinder switch-model`)",
        active.key, requested.key,
    )  # fmt: skip
    return active
