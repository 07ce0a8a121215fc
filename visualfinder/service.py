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

from visualfinder.catalog import Catalog, CatalogStats, Folder, ModelRef
from visualfinder.config import METRICS, Settings
from visualfinder.embedder import Embedder, model_key
from visualfinder.errors import (
    Cancelled,
    EmptyLibraryError,
    FolderNotFoundError,
    ImageDecodeError,
    LibraryBusyError,
    ModelMismatchError,
    QueryError,
    SettingsError,
    StorageError,
)
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.export import write_results_csv
from visualfinder.fetch import fetch_image
from visualfinder.imaging import DecodedImage, crop_region, decode_file, decode_image, library_decode_side
from visualfinder.index import IndexSpec, VectorIndex
from visualfinder.jobs import BackgroundJob, CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.library_catalog import CatalogFeatures
from visualfinder.metadata_import import apply_sidecars
from visualfinder.model_switch import SwitchReport, SwitchState, run_switch, switch_state
from visualfinder.pipeline import IndexingPipeline, IndexReport
from visualfinder.scanner import LIBRARY_MARKER, FileStat, scan, scan_paths
from visualfinder.search import Filters, Plan, SearchPlanner, SearchResult, combine

if TYPE_CHECKING:  # the remote package (and opensearch-py) is imported only when used
    from visualfinder.remote.mapping import RemoteSpec
    from visualfinder.remote.opensearch import RemoteCluster
    from visualfinder.remote.query import RemoteSearcher
    from visualfinder.remote.sync import Syncer, SyncReport, SyncStatus

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.db"
INDEX_FILE = "index.usearch"
THUMBS_DIR = "thumbs"
LOCK_FILE = "writer.lock"
# How long a search on an empty index waits for this library's writer to catch up with the catalog.
_EMPTY_INDEX_WAIT_S = 30.0


@dataclass
class QueryTerm:
    """One part of a query. `kind`: image (file path), url (http/https image), pil (decoded
    image), text, similar (an indexed image by path or id).

    weight +1 means "more like this", -1 "less like this". `crop` is (x, y, w, h) in pixels or
    fractions of the image.
    """

    kind: str
    value: object
    weight: float = 1.0
    crop: tuple[float, float, float, float] | None = None


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


@dataclass
class FolderStatus:
    folder: Folder
    ok: int
    errors: int
    exists: bool


@dataclass
class LibraryStatus:
    data_dir: Path
    catalog_path: Path
    index_path: Path
    model: str
    pretrained: str
    model_key: str
    device: str
    metric: str
    index_dtype: str
    stats: CatalogStats
    folders: list[FolderStatus]
    index_count: int
    index_generation: int
    catalog_generation: int
    index_health: str
    errors: list[tuple[str, str]]
    schema_version: int
    requested_model_key: str = ""
    switch: SwitchState | None = None
    stored_models: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        s = self.stats
        return {
            "data_dir": str(self.data_dir), "catalog_path": str(self.catalog_path), "index_path": str(self.index_path),
            "model": self.model, "pretrained": self.pretrained, "model_key": self.model_key,
            "device": self.device, "metric": self.metric, "index_dtype": self.index_dtype,
            "folders": [{"path": f.folder.path, "watched": f.folder.watched, "images": f.ok, "errors": f.errors,
                         "exists": f.exists} for f in self.folders],
            "images": s.images, "ok": s.ok, "errors": s.errors, "embedded": s.embedded_current,
            "needs_embedding": s.needs_embedding, "outbox_pending": s.outbox_pending,
            "index": {"count": self.index_count, "generation": self.index_generation,
                      "catalog_generation": self.catalog_generation, "health": self.index_health},
            "error_files": [{"path": p, "reason": r} for p, r in self.errors],
            "schema_version": self.schema_version, "requested_model_key": self.requested_model_key,
            "switch": self.switch.to_json() if self.switch else None, "stored_models": self.stored_models,
        }  # fmt: skip


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


class Library(CatalogFeatures):
    """A catalog of product images and everything that can be done with it.

    The product-catalog features (metadata, duplicates, the query bar) are written in
    library_catalog.CatalogFeatures, part of this one class.
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

    # --- metric and model ------------------------------------------------------------------

    def set_metric(
        self, metric: str, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """Switch the distance metric: rebuilds the index from stored vectors (no re-embedding)."""
        if metric not in METRICS:
            raise SettingsError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        with self._writing():
            if metric == self.metric:
                return len(self.vector_index)
            engine = self._new_engine(self.model, metric)
            engine.index.rebuild(
                self.catalog.iter_embeddings(self.model_key), self.catalog.count_embedded(self.model_key),
                self.catalog.generation, progress, cancel,
            )  # fmt: skip
            progress(Progress("saving index", 0, 0))
            engine.index.save(self.index_path)
            self.catalog.set_meta("metric", metric)
            self._engine = engine
            self._unsaved = False
        self.events.emit(LibraryChanged(None, "rebuild"))
        return len(engine.index)

    def switch_model(
        self,
        model: str,
        pretrained: str,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> SwitchReport:
        """Re-embed every image with another model, then make it the active one.

        Searches keep using the current model until the new vectors are complete; a cancelled
        or interrupted switch stays pending and resumes where it stopped when called again.
        """
        return run_switch(self, ModelRef(model, pretrained, model_key(model, pretrained)), progress, cancel)

    def start_model_switch(
        self, model: str, pretrained: str, progress: ProgressCallback = no_progress
    ) -> BackgroundJob:
        """`switch_model` on a background thread; its `result` is the SwitchReport."""
        job = BackgroundJob(
            "switch-model", lambda cancel: self.switch_model(model, pretrained, progress, cancel)
        )
        self._jobs = [j for j in self._jobs if not j.done] + [job]
        return job.start()

    def pending_model_switch(self) -> SwitchState | None:
        """The switch that was started and has not completed (resume it with `switch_model`)."""
        return switch_state(self)

    def abandon_model_switch(self) -> None:
        """Forget a pending switch; the vectors it computed stay until `forget_model`."""
        self.catalog.set_pending_switch(None)

    def stored_models(self) -> dict[str, int]:
        """Model key -> number of stored vectors (the active model, a pending switch, older ones)."""
        return self.catalog.model_counts()

    def forget_model(self, key: str) -> int:
        """Delete the stored vectors of a model that is neither active nor being switched to."""
        pending = self.catalog.pending_switch()
        if key == self.model_key or (pending is not None and pending.key == key):
            raise QueryError(f"{key} is in use by this library; its vectors cannot be forgotten")
        return self.catalog.delete_embeddings(key)

    def _install_switched_model(
        self, model: ModelRef, embedder: Embedder, progress: ProgressCallback
    ) -> None:
        """Under the writer lock: build `model`'s index from its stored vectors and make it active."""
        engine = self._new_engine(model, self.metric, embedder)
        engine.index.rebuild(
            self.catalog.iter_embeddings(model.key), self.catalog.count_embedded(model.key), 0, progress
        )
        engine.index.generation = self.catalog.set_active_model(model, finish_switch=True)
        self._engine = engine
        progress(Progress("saving index", 0, 0))
        self._save_index()
        self.events.emit(LibraryChanged(None, "model"))

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
        if (
            self._write_lock.acquire(timeout=wait_s)
            if wait_s > 0
            else self._write_lock.acquire(blocking=False)
        ):
            try:
                self.sync_index()
            finally:
                self._write_lock.release()

    def query_vector(self, term: QueryTerm) -> np.ndarray:
        """The embedding of one query term by the active model."""
        return self._query_vector(term, self._engine)

    def _query_vector(self, term: QueryTerm, engine: _Engine) -> np.ndarray:
        if term.kind == "text":
            text = str(term.value).strip()
            if not text:
                raise QueryError("the text query is empty")
            return engine.embedder.embed_texts([text])[0]
        if term.kind == "similar":
            return self._indexed_vector(term.value, engine.model.key)
        if term.kind == "image":
            decoded = self.decode_query_image(term.value, engine.embedder)
        elif term.kind == "url":
            decoded = self.fetch_query_image(str(term.value), engine.embedder)
        elif term.kind == "pil":
            image = term.value.convert("RGB")
            decoded = DecodedImage(image, image.size[0], image.size[1], "query")
        else:
            raise QueryError(f"unknown query term kind {term.kind!r}")
        if term.crop is not None:
            try:
                decoded = crop_region(decoded, term.crop)
            except ImageDecodeError as exc:
                raise QueryError(f"cannot crop the query image: {exc.reason}") from exc
        return engine.embedder.embed_images([decoded.image])[0]

    def fetch_query_image(
        self, url: str, embedder: Embedder | None = None, min_side: int | None = None
    ) -> DecodedImage:
        """Download a query image (size limit, timeout and content-type check) and decode it."""
        s = self.settings
        data = fetch_image(url, max_bytes=s.url_max_bytes, timeout=s.url_timeout_s)
        return self.decode_query_bytes(data, url, embedder, min_side)

    def _decode_side(self, embedder: Embedder | None) -> int:
        return library_decode_side((embedder or self.embedder).image_size, self.settings.thumbnail_size)

    def decode_query_image(
        self, path: str | os.PathLike, embedder: Embedder | None = None, min_side: int | None = None
    ) -> DecodedImage:
        """Decode a query image file; `min_side` asks for more pixels than the model needs (display)."""
        try:
            return decode_file(
                path,
                min_side=max(min_side or 0, self._decode_side(embedder)),
                max_pixels=self.settings.max_image_pixels,
            )
        except ImageDecodeError as exc:
            raise QueryError(f"cannot use {path} as a query image: {exc.reason}") from exc

    def decode_query_bytes(
        self, data: bytes, name: str, embedder: Embedder | None = None, min_side: int | None = None
    ) -> DecodedImage:
        """Decode query image data that is not a file (pasted, dropped from a browser, downloaded);
        `name` says where it came from in the error message."""
        try:
            return decode_image(
                data,
                min_side=max(min_side or 0, self._decode_side(embedder)),
                max_pixels=self.settings.max_image_pixels,
                path=name,
            )
        except ImageDecodeError as exc:
            raise QueryError(f"cannot use {name} as a query image: {exc.reason}") from exc

    def _indexed_vector(self, ref: object, key: str | None = None) -> np.ndarray:
        """The stored vector of an indexed image, by id or by path."""
        if isinstance(ref, (int, np.integer)):
            image_id = int(ref)
        else:
            full = os.path.abspath(os.path.expanduser(os.fspath(ref)))
            image_id = self.catalog.id_for_path(full)
            if image_id is None:
                raise QueryError(f"{ref} is not in the library; index its folder first or search by image")
        vector = self.catalog.embedding_of(image_id, key or self.model_key)
        if vector is None:
            raise QueryError(f"{ref} has no embedding (it could not be decoded, or awaits re-indexing)")
        return vector

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

    # --- OpenSearch sync and remote search (visualfinder.remote) ---------------------------

    def remote_cluster(self) -> RemoteCluster:
        """The connection to the configured OpenSearch cluster (made once, on first use)."""
        from visualfinder.remote.opensearch import connect

        with self._remote_lock:
            if self._remote is None:
                self._remote = connect(self.settings)
            return self._remote

    def remote_spec(self) -> RemoteSpec:
        """What the remote index must hold: this library's model, dimension and metric."""
        from visualfinder.remote.sync import remote_spec

        return remote_spec(self.settings, self.embedder.dim, self.metric, self.model_key)

    def remote_searcher(self) -> RemoteSearcher:
        from visualfinder.remote.query import RemoteSearcher

        cluster = self.remote_cluster()
        spec = self.remote_spec()
        with self._remote_lock:
            # A new one after a model or metric switch: the spec names both.
            if self._remote_searcher is None or self._remote_searcher.spec != spec:
                self._remote_searcher = RemoteSearcher(
                    cluster, spec, self.settings.exact_search_max_candidates, self.catalog
                )
            return self._remote_searcher

    def syncer(self, cluster: RemoteCluster | None = None) -> Syncer:
        """A Syncer for this library (its own, for a background thread; see remote.worker)."""
        from visualfinder.remote.sync import Syncer

        return Syncer(self.catalog, cluster or self.remote_cluster(), self.remote_spec(), self.settings)

    def sync(
        self,
        *,
        full: bool = False,
        recreate: bool = False,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> SyncReport:
        """Push every pending change to OpenSearch (everything with `full`; a new index with `recreate`)."""
        return self.syncer().run(full=full, recreate=recreate, progress=progress, cancel=cancel)

    def sync_pending(self) -> int:
        from visualfinder.remote.outbox import Outbox

        return Outbox(self.catalog).pending()

    def sync_status(self, rejected_limit: int | None = 20) -> SyncStatus:
        from visualfinder.remote.outbox import Outbox, SyncState
        from visualfinder.remote.sync import SyncStatus

        outbox = Outbox(self.catalog)
        state = SyncState.load(self.catalog)
        s = self.settings
        return SyncStatus(
            configured=s.sync_configured, enabled=self.catalog.outbox_enabled, urls=s.remote_urls,
            index=s.remote_index, user=s.remote_user, pending=outbox.pending(),
            rejected=outbox.rejected(rejected_limit), rejected_count=outbox.rejected_count(),
            last_success=state.last_success, last_error=state.last_error, last_error_at=state.last_error_at,
        )  # fmt: skip

    # --- reporting -----------------------------------------------------------------------

    def export_csv(
        self, results: Sequence[SearchResult], dest: str | os.PathLike, excel: bool = False
    ) -> Path:
        try:
            return write_results_csv(results, dest, excel=excel)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc

    def status(self, error_limit: int | None = 50) -> LibraryStatus:
        stats = self.catalog.stats(self.model_key)
        counts = self.catalog.folder_counts()
        folders = [
            FolderStatus(f, *counts.get(f.id, (0, 0)), exists=os.path.isdir(f.path)) for f in self.folders()
        ]
        return LibraryStatus(
            data_dir=self.data_dir, catalog_path=self.catalog.path, index_path=self.index_path,
            model=self.model.name, pretrained=self.model.pretrained, model_key=self.model_key,
            device=self.settings.device, metric=self.metric, index_dtype=self.vector_index.spec.dtype, stats=stats,
            folders=folders, index_count=len(self.vector_index), index_generation=self.vector_index.generation,
            catalog_generation=self.catalog.generation, index_health=self.index_health,
            errors=self.catalog.errors(error_limit), schema_version=self.catalog.schema_version(),
            requested_model_key=self.requested_model.key, switch=switch_state(self),
            stored_models=self.catalog.model_counts(),
        )  # fmt: skip


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
