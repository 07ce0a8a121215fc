"""service.Library: the one facade the CLI, the GUI, the watcher and the tests go through.

`open_library(settings)` is the composition root: it builds the catalog, the embedder and
the vector index, and hands them to Library.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout

from visualfinder.catalog.store import Catalog, Folder, ModelRef
from visualfinder.config import Settings
from visualfinder.errors import (
    Cancelled,
    EmptyLibraryError,
    FolderNotFoundError,
    LibraryBusyError,
    ModelMismatchError,
    QueryError,
    SettingsError,
    StorageError,
)
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.ingest.pipeline import IndexingPipeline, IndexReport
from visualfinder.ingest.scanner import LIBRARY_MARKER, FileStat, scan, scan_paths
from visualfinder.jobs import BackgroundJob, CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.library.catalog_features import CatalogFeatures
from visualfinder.library.models import ModelFeatures
from visualfinder.library.queries import QueryFeatures, QueryTerm
from visualfinder.library.remote import RemoteFeatures
from visualfinder.library.status import FolderStatus, LibraryStatus, StatusFeatures
from visualfinder.models.embedder import Embedder, model_key
from visualfinder.products.export import write_results_csv
from visualfinder.products.importer import apply_sidecars
from visualfinder.search.planner import Filters, Plan, SearchPlanner, SearchResult, combine
from visualfinder.search.vector_index import IndexSpec, VectorIndex

if TYPE_CHECKING:  # the remote package (and opensearch-py) is imported only when used
    from visualfinder.remote.opensearch import RemoteCluster
    from visualfinder.remote.query import RemoteSearcher

# Records of the Library's API written beside it, importable from here as before.
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
INDEX_FILE = "index.usearch"
THUMBS_DIR = "thumbs"
LOCK_FILE = "writer.lock"
# How long a search on an empty index waits for this library's writer to catch up with the catalog.
_EMPTY_INDEX_WAIT_S = 30.0


@dataclass
class SearchRequest:
    terms: list[QueryTerm]
    k: int = 20
    filters: Filters = field(default_factory=Filters)
    exact: bool = False
    # Search the OpenSearch index this library syncs to, instead of the local index.
    remote: bool = False


@dataclass
class SearchResponse:
    results: list[SearchResult]
    plan: Plan
    seconds: float


@dataclass(frozen=True)
class _Engine:
    """What answers searches: one model, its vector index and the planner over them.

    Replaced as a whole (metric or model switch), so a search that started on one engine
    finishes on it even if another thread installs a new one meanwhile.
    """

    model: ModelRef
    embedder: Embedder
    index: VectorIndex
    planner: SearchPlanner

    @property
    def metric(self) -> str:
        return self.index.spec.metric


class Library(QueryFeatures, ModelFeatures, CatalogFeatures, RemoteFeatures, StatusFeatures):
    """A catalog of product images and everything that can be done with it.

    One class, written in several files so each stays readable: here the lifecycle, folders,
    indexing, the vector index and search; query terms in library_queries, model and metric
    switches in library_models, product metadata, duplicates and the query bar in
    library_catalog, OpenSearch in library_remote, `status()` in library_status.
    """

    def __init__(self, settings: Settings, catalog: Catalog, embedder: Embedder, vector_index: VectorIndex):
        self.settings = settings
        self.catalog = catalog
        model = catalog.active_model()
        if model is None or model.key != embedder.key:
            model = ModelRef(embedder.model_name, embedder.pretrained, embedder.key)
        self._engine = self._make_engine(model, embedder, vector_index)
        self.index_path = settings.data_dir / INDEX_FILE
        self.thumbs_dir = settings.data_dir / THUMBS_DIR
        self.index_health = "ok"
        # One writer at a time: in this process (threads) and across processes (file lock).
        self._write_lock = threading.RLock()
        self._file_lock = FileLock(str(settings.data_dir / LOCK_FILE))
        self._last_save = time.monotonic()
        self._unsaved = False
        self.events = EventHub()
        self._jobs: list[BackgroundJob] = []
        self._remote_lock = threading.Lock()
        self._remote: RemoteCluster | None = None
        self._remote_searcher: RemoteSearcher | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def embedder(self) -> Embedder:
        """The active model's embedder (the one queries and indexing use)."""
        return self._engine.embedder

    @property
    def vector_index(self) -> VectorIndex:
        return self._engine.index

    @property
    def planner(self) -> SearchPlanner:
        return self._engine.planner

    @property
    def metric(self) -> str:
        return self._engine.metric

    @property
    def model(self) -> ModelRef:
        """The library's active model: its vectors fill the index."""
        return self._engine.model

    @property
    def model_key(self) -> str:
        return self._engine.model.key

    @property
    def requested_model(self) -> ModelRef:
        """The model the settings ask for; differs from `model` until a switch to it completes."""
        s = self.settings
        return ModelRef(s.model, s.pretrained, model_key(s.model, s.pretrained))

    def close(self) -> None:
        """Stop background jobs, save pending index changes (if we may write), release the catalog."""
        for job in list(self._jobs):
            job.cancel()
            job.wait()
        try:
            if self._unsaved:
                with self._writing(wait=5.0):
                    self._save_index()
        except LibraryBusyError:
            log.warning(
                "index not saved on close: another process holds the library; it will catch up on open"
            )
        except StorageError as exc:  # the index is a cache: the next open catches it up or rebuilds it
            log.warning("index not saved on close: %s", exc)
        finally:
            if self._remote is not None:
                self._remote.close()
            self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _writing(self, wait: float = 0.0):
        """Hold the writer lock; raises LibraryBusyError if another process holds it."""
        with self._write_lock:
            try:
                self._file_lock.acquire(timeout=wait)
            except Timeout as exc:
                raise LibraryBusyError(
                    f"the library in {self.data_dir} is being changed by another visualfinder process; "
                    "try again when it has finished"
                ) from exc
            try:
                self._follow_catalog()
                self.sync_index()  # another process may have committed since we last looked
                yield
            finally:
                self._file_lock.release()

    # --- engines: the model and metric that answer searches --------------------------------

    def _make_engine(self, model: ModelRef, embedder: Embedder, index: VectorIndex) -> _Engine:
        planner = SearchPlanner(
            self.catalog, index, index.spec.metric, model.key, self.settings.exact_search_max_candidates
        )
        return _Engine(model, embedder, index, planner)

    def _new_engine(self, model: ModelRef, metric: str, embedder: Embedder | None = None) -> _Engine:
        """An engine with an empty index for `model` and `metric` (fill it, then install it)."""
        s = self.settings
        if embedder is None:
            current = self._engine.embedder
            embedder = (
                current
                if current.key == model.key
                else Embedder.for_settings(s, model.name, model.pretrained)
            )
        spec = IndexSpec(
            embedder.dim, metric, s.index_dtype, s.hnsw_connectivity, model.key, self.catalog.library_id
        )
        return self._make_engine(
            model, embedder, VectorIndex(spec, s.hnsw_expansion_add, s.hnsw_expansion_search)
        )

    def _follow_catalog(self) -> None:
        """Pick up a model or metric switch that another process committed to the catalog.

        In this process the switching thread installs its new engine itself, right after its
        commit; while a writer of this process holds the lock, searches go on with the engine
        they have (never waiting for it).
        """
        if self._catalog_agrees():
            return
        if not self._write_lock.acquire(blocking=False):
            return
        try:
            model = self.catalog.active_model() or self.model
            metric = self.catalog.meta("metric") or self.metric
            if model.key == self.model_key and metric == self.metric:
                return
            log.info("the library now uses %s with the %s metric; reloading its index", model.key, metric)
            engine = self._new_engine(model, metric)
            state = VectorIndex.read_state(self.index_path)
            loaded = (
                state is not None and self.index_path.exists() and engine.index.load(self.index_path, state)
            )
            if not loaded:
                engine.index.rebuild(
                    self.catalog.iter_embeddings(model.key), self.catalog.count_embedded(model.key),
                    self.catalog.generation,
                )  # fmt: skip
            self._engine = engine
            self.sync_index()
        finally:
            self._write_lock.release()

    def _catalog_agrees(self) -> bool:
        rows = dict(
            self.catalog.conn.execute("SELECT key, value FROM meta WHERE key IN ('model_key', 'metric')")
        )
        return (
            rows.get("model_key", self.model_key) == self.model_key
            and rows.get("metric", self.metric) == self.metric
        )

    # --- folders -------------------------------------------------------------------------

    def folders(self) -> list[Folder]:
        return self.catalog.folders()

    def add_folders(self, paths: Sequence[str | os.PathLike], watched: bool | None = None) -> list[Folder]:
        """Register folders (validated first: nothing is added if one is missing)."""
        resolved = []
        for path in paths:
            full = os.path.abspath(os.path.expanduser(os.fspath(path)))
            if not os.path.exists(full):
                raise FolderNotFoundError(f"folder not found: {path}")
            if not os.path.isdir(full):
                raise FolderNotFoundError(f"not a folder: {path} (give the folder that holds the images)")
            resolved.append(full)
        with self._write_lock:
            return [self.catalog.add_folder(p, watched) for p in resolved]

    def remove_folder(self, path: str | os.PathLike) -> int:
        """Forget a catalog folder and its images (the files on disk are not touched)."""
        full = os.path.abspath(os.path.expanduser(os.fspath(path)))
        folder = self.catalog.folder_by_path(full)
        if folder is None:
            raise FolderNotFoundError(f"not a catalog folder: {path}")
        with self._writing():
            removed = self.catalog.remove_folder(folder.id)
            self.vector_index.remove(removed)
            self.vector_index.generation = self.catalog.generation
            self._save_index()
        self.events.emit(LibraryChanged(None, "folders"))
        return len(removed)

    def set_watched(self, path: str | os.PathLike, watched: bool) -> Folder:
        full = os.path.abspath(os.path.expanduser(os.fspath(path)))
        folder = self.catalog.folder_by_path(full)
        if folder is None:
            raise FolderNotFoundError(f"not a catalog folder: {path}")
        self.catalog.set_folder_watched(folder.id, watched)
        self.events.emit(LibraryChanged(None, "folders"))
        return self.catalog.folder_by_path(full)

    def watched_folders(self) -> list[Folder]:
        """The catalog folders marked watched: what a `watcher.Watcher` follows."""
        return [f for f in self.catalog.folders() if f.watched]

    # --- indexing ------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | os.PathLike] | None = None,
        *,
        watched: bool | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        source: str = "index",
    ) -> IndexReport:
        """Add `paths` as folders (if given) and bring them, or every folder, up to date.

        `source` names the caller in the LibraryChanged event ("index", "watcher", ...).
        """
        roots = self.add_folders(paths, watched) if paths else self.catalog.folders()
        with self._writing():
            progress(Progress("scanning", 0, 0))
            started = time.perf_counter()
            plan = scan(self.catalog, roots, self.model_key, cancel,
                        on_file=lambda n: progress(Progress("scanning", n, 0)))  # fmt: skip
            log.info("scan: %d new, %d changed, %d missing, %d unchanged in %.2fs", len(plan.new),
                     len(plan.changed), len(plan.missing), plan.unchanged, time.perf_counter() - started)  # fmt: skip
            report = self.pipeline().run(plan, progress, cancel)
            if report.changed or self._unsaved:
                progress(Progress("saving index", 0, 0))
                self._save_index()
            if plan.sidecars and not report.cancelled:
                self._apply_sidecars(plan.sidecars, {f.path for f in plan.new} | {f.path for f, _ in plan.changed},
                                     report)  # fmt: skip
        if report.changed:
            self.events.emit(LibraryChanged(report, source))
        if report.metadata_updated:
            self.events.emit(LibraryChanged(None, "metadata"))
        return report

    def _apply_sidecars(
        self, sidecars: list[tuple[str, int, int]], new_paths: set[str], report: IndexReport
    ) -> None:
        """Metadata sidecars seen by the scan: new or changed ones, or ones naming new images."""
        result = apply_sidecars(self.catalog, sidecars, new_paths)
        report.metadata_updated += result.images_updated
        report.folder_errors += result.problems

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
        full = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
        report = IndexReport()
        with self._writing(wait=wait):
            try:
                plan = scan_paths(self.catalog, full, self.model_key, accept, cancel,
                                  on_file=lambda n: progress(Progress("scanning", n, 0)))  # fmt: skip
            except Cancelled:
                report.cancelled = True
                return report
            held: list[str] = []
            if plan.deferred and plan.missing and hold_removals:
                held, plan.missing = [r.path for r in plan.missing], []
            if plan.work or plan.missing:
                report = self.pipeline().run(plan, progress, cancel)
            else:
                report = IndexReport(unchanged=plan.unchanged, folder_errors=list(plan.folder_errors))
            report.deferred = plan.deferred + held
            if save_index and (report.changed or self._unsaved):
                self._save_index()
            if plan.sidecars and not report.cancelled:
                self._apply_sidecars(plan.sidecars, {f.path for f in plan.new} | {f.path for f, _ in plan.changed},
                                     report)  # fmt: skip
        if report.changed or report.metadata_updated:
            self.events.emit(LibraryChanged(report, source))
        if report.metadata_updated:
            self.events.emit(LibraryChanged(None, "metadata"))
        return report

    def save_index(self, wait: float = 5.0) -> bool:
        """Write pending vector-index changes to disk; False when there were none."""
        if not self._unsaved:
            return False
        with self._writing(wait=wait):
            self._save_index()
        return True

    def pipeline(self) -> IndexingPipeline:
        """The indexing pipeline bound to this library (the watcher feeds it its own plans)."""
        s = self.settings
        return IndexingPipeline(
            self.catalog, self.embedder, self.vector_index, self.thumbs_dir, thumbnail_size=s.thumbnail_size,
            max_pixels=s.max_image_pixels, decode_workers=s.decode_workers,
            file_time_limit=s.file_time_limit_s or None, on_commit=self._after_commit,
        )  # fmt: skip

    def _after_commit(self) -> None:
        self._unsaved = True
        if time.monotonic() - self._last_save > self.settings.index_save_interval_s:
            self._save_index()

    def _save_index(self) -> None:
        self.vector_index.save(self.index_path)
        self._last_save = time.monotonic()
        self._unsaved = False

    # --- the vector index ----------------------------------------------------------------

    def sync_index(self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> str:
        """Bring the in-memory index up to the catalog's generation; returns what was done."""
        catalog_gen = self.catalog.generation
        if self.vector_index.generation == catalog_gen and len(
            self.vector_index
        ) == self.catalog.count_embedded(self.model_key):
            return "current"
        if self.vector_index.generation > catalog_gen:
            log.warning(
                "the vector index is newer than the catalog (generation %d > %d: the catalog's last "
                "commits were lost, e.g. in a power cut); rebuilding it from the catalog",
                self.vector_index.generation, catalog_gen,
            )  # fmt: skip
            self.rebuild_index(progress, cancel, save=False)
            return "rebuilt"
        # Catch up: vectors written since our generation, then drop ids the catalog no longer has.
        for ids, vectors in self.catalog.iter_embeddings(
            self.model_key, min_generation=self.vector_index.generation + 1
        ):
            self.vector_index.add(ids, vectors)
        wanted = self.catalog.embedded_ids(self.model_key)
        present = self.vector_index.keys()
        self.vector_index.remove(np.setdiff1d(present, wanted, assume_unique=True).tolist())
        missing = np.setdiff1d(wanted, present, assume_unique=True)
        if len(missing):
            for ids, vectors in self.catalog.iter_embeddings(self.model_key, ids=missing.tolist()):
                self.vector_index.add(ids, vectors)
        self.vector_index.generation = catalog_gen
        self._unsaved = True
        return "caught up"

    def rebuild_index(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None, save: bool = True
    ) -> int:
        """Rebuild the vector index from the catalog's stored embeddings (no re-embedding)."""
        with self._write_lock:
            total = self.catalog.count_embedded(self.model_key)
            generation = self.catalog.generation
            self.vector_index.rebuild(
                self.catalog.iter_embeddings(self.model_key), total, generation, progress, cancel
            )
            self._unsaved = True
            if save:
                with self._writing():
                    progress(Progress("saving index", 0, 0))
                    self._save_index()
            return len(self.vector_index)

    # --- search --------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResponse:
        """Answer a query: combine its terms into one vector and run the planner (local or remote)."""
        started = time.perf_counter()
        self._follow_catalog()
        if request.remote:
            if request.k < 1:
                raise QueryError("k must be at least 1")
            query = self._query(request, self._engine)
            results, plan = self.remote_searcher().search(query, request.k, request.filters, request.exact)
            return SearchResponse(results, plan, time.perf_counter() - started)
        self._catch_up_with_other_processes()
        if len(self._engine.index) == 0:
            # Nothing to search yet here, while the catalog may have vectors that another
            # library committed: this one time, wait for this library's writer and catch up.
            self._catch_up_with_other_processes(wait_s=_EMPTY_INDEX_WAIT_S)
        engine = self._engine
        if len(engine.index) == 0:
            stats = self.catalog.stats(self.model_key)
            if stats.needs_embedding:
                raise ModelMismatchError(
                    f"the library's {stats.needs_embedding} images were embedded with another model; "
                    f"run `visualfinder index` to embed them with {self.model_key}"
                )
            raise EmptyLibraryError(
                "the library has no indexed images yet; add a folder first (visualfinder index FOLDER)"
            )
        if request.k < 1:
            raise QueryError("k must be at least 1")
        if not request.terms:
            if request.filters.is_empty():
                raise QueryError("nothing to search for: give an image, a text or a filter")
            results, plan = engine.planner.browse(request.k, request.filters)
            return SearchResponse(results, plan, time.perf_counter() - started)
        query = self._query(request, engine)
        results, plan = engine.planner.search(query, request.k, request.filters, request.exact)
        return SearchResponse(results, plan, time.perf_counter() - started)

    def _query(self, request: SearchRequest, engine: _Engine) -> np.ndarray:
        """The request's terms combined into one query vector (by the engine's model)."""
        vectors = [self._query_vector(term, engine) for term in request.terms]
        return combine(vectors, [term.weight for term in request.terms])

    def _catch_up_with_other_processes(self, wait_s: float = 0.0) -> None:
        """If another process changed the catalog, bring our index up to date before searching.

        When a writer of this process is running, a generation gap is expected (it mirrors
        each batch right after committing it) and searches must not wait for it: skip, unless
        told to wait up to `wait_s`.
        """
        if self.catalog.generation == self.vector_index.generation:
            return
        if self._write_lock.acquire(timeout=wait_s):  # 0: one try, no wait
            try:
                self.sync_index()
            finally:
                self._write_lock.release()

    def search_image(self, path: str | os.PathLike, k: int = 20, **kwargs) -> list[SearchResult]:
        """Shortcut: results for one query image file."""
        return self.search(SearchRequest([QueryTerm("image", path)], k, **kwargs)).results

    # --- tags ----------------------------------------------------------------------------

    def image_id(self, ref: int | str | os.PathLike) -> int:
        """The catalog id of an image given by id or path."""
        if isinstance(ref, (int, np.integer)):
            return int(ref)
        image_id = self.catalog.id_for_path(os.path.abspath(os.path.expanduser(os.fspath(ref))))
        if image_id is None:
            raise QueryError(f"{ref} is not in the library")
        return image_id

    def add_tags(self, ref: int | str | os.PathLike, tags: Sequence[str]) -> list[str]:
        """Add tags to an image; returns its tags afterwards."""
        image_id = self.image_id(ref)
        self.catalog.add_tags(image_id, tags)
        self.events.emit(LibraryChanged(None, "metadata"))
        return self.catalog.tags_of(image_id)

    def remove_tags(self, ref: int | str | os.PathLike, tags: Sequence[str]) -> list[str]:
        """Remove tags from an image; returns its tags afterwards."""
        image_id = self.image_id(ref)
        self.catalog.remove_tags(image_id, tags)
        self.events.emit(LibraryChanged(None, "metadata"))
        return self.catalog.tags_of(image_id)

    def all_tags(self) -> list[tuple[str, int]]:
        """Every tag in the library with its image count, most used first."""
        return self.catalog.tag_counts()

    # --- reporting -----------------------------------------------------------------------

    def export_csv(
        self, results: Sequence[SearchResult], dest: str | os.PathLike, excel: bool = False
    ) -> Path:
        try:
            return write_results_csv(results, dest, excel=excel)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc


def open_library(settings: Settings, progress: ProgressCallback = no_progress) -> Library:
    """Build a Library from settings: open the catalog, prepare the model, load or rebuild the index."""
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
        embedder = Embedder.for_settings(settings, model.name, model.pretrained)
        metric = catalog.meta("metric")
        if metric is None:  # a new library takes the configured metric and keeps it
            metric = settings.metric
            catalog.set_meta("metric", metric)
        spec = IndexSpec(
            embedder.dim,
            metric,
            settings.index_dtype,
            settings.hnsw_connectivity,
            embedder.key,
            catalog.library_id,
        )
        index = VectorIndex(spec, settings.hnsw_expansion_add, settings.hnsw_expansion_search)
        library = Library(settings, catalog, embedder, index)
        library.index_health = _load_index(library, progress)
    except BaseException:
        catalog.close()
        raise
    return library


def _library_model(catalog: Catalog, settings: Settings) -> ModelRef:
    """The model a library uses: the one it recorded, or (a new library) the configured one.

    Like the metric, the model belongs to the library: settings naming another model do not
    change it (that needs a switch, which re-embeds); `status` shows the difference.
    """
    requested = ModelRef(settings.model, settings.pretrained, model_key(settings.model, settings.pretrained))
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


def _load_index(library: Library, progress: ProgressCallback) -> str:
    """Open the saved index if it matches the catalog, catch it up, or rebuild it."""
    path = library.index_path
    state = VectorIndex.read_state(path)
    loaded = (
        state is not None
        and path.exists()
        and library.vector_index.load(path, state, view=library.settings.index_memory_map)
    )
    if loaded:
        health = library.sync_index(progress)
        return "ok" if health == "current" else health
    if library.catalog.count_embedded(library.model_key) == 0:
        library.vector_index.generation = library.catalog.generation
        return "ok"
    if path.exists() or state is not None:
        log.warning("the vector index does not match the catalog; rebuilding it from stored embeddings")
    library.rebuild_index(progress, save=False)
    try:
        with library._writing():
            library._save_index()
    except LibraryBusyError:
        pass  # the writer will save it; we keep ours in memory
    except StorageError as exc:  # searches still work from the rebuilt index in memory
        log.warning("%s", exc)
    return "rebuilt"
