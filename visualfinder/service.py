"""service.Library: the one facade the CLI, the GUI, the watcher and the tests go through.

`open_library(settings)` is the composition root: it builds the catalog, the embedder and
the vector index, and hands them to Library.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout

from visualfinder.catalog import Catalog, CatalogStats, Folder
from visualfinder.config import Settings
from visualfinder.embedder import Embedder
from visualfinder.errors import (
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
from visualfinder.imaging import DecodedImage, crop_region, decode_file
from visualfinder.index import IndexSpec, VectorIndex
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.pipeline import IndexingPipeline, IndexReport
from visualfinder.scanner import scan
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


@dataclass
class QueryTerm:
    """One part of a query. `kind`: image (path), pil (decoded image), text, similar (indexed path).

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
            "schema_version": self.schema_version,
        }  # fmt: skip


class Library:
    """A catalog of product images and everything that can be done with it."""

    def __init__(self, settings: Settings, catalog: Catalog, embedder: Embedder, vector_index: VectorIndex):
        self.settings = settings
        self.catalog = catalog
        self.embedder = embedder
        self.vector_index = vector_index
        self.metric = vector_index.spec.metric
        self.index_path = settings.data_dir / INDEX_FILE
        self.thumbs_dir = settings.data_dir / THUMBS_DIR
        self.index_health = "ok"
        # One writer at a time: in this process (threads) and across processes (file lock).
        self._write_lock = threading.RLock()
        self._file_lock = FileLock(str(settings.data_dir / LOCK_FILE))
        self._last_save = time.monotonic()
        self._unsaved = False
        self.events = EventHub()
        self._remote_lock = threading.Lock()
        self._remote: RemoteCluster | None = None
        self._remote_searcher: RemoteSearcher | None = None
        self.planner = SearchPlanner(
            catalog, vector_index, self.metric, embedder.key, settings.exact_search_max_candidates
        )

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def model_key(self) -> str:
        return self.embedder.key

    def close(self) -> None:
        """Save pending index changes (if we may write) and release the catalog."""
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
                self.sync_index()  # another process may have committed since we last looked
                yield
            finally:
                self._file_lock.release()

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
        return self.catalog.folder_by_path(full)

    # --- indexing ------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | os.PathLike] | None = None,
        *,
        watched: bool | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> IndexReport:
        """Add `paths` as folders (if given) and bring them, or every folder, up to date."""
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
        if report.changed:
            self.events.emit(LibraryChanged(report, "index"))
        return report

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
        if request.remote:
            if request.k < 1:
                raise QueryError("k must be at least 1")
            query = self._query(request)
            results, plan = self.remote_searcher().search(query, request.k, request.filters, request.exact)
            return SearchResponse(results, plan, time.perf_counter() - started)
        self._catch_up_with_other_processes()
        if len(self.vector_index) == 0:
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
        query = self._query(request)
        results, plan = self.planner.search(query, request.k, request.filters, request.exact)
        return SearchResponse(results, plan, time.perf_counter() - started)

    def _query(self, request: SearchRequest) -> np.ndarray:
        """The request's terms combined into one query vector."""
        vectors, weights = [], []
        for term in request.terms:
            vectors.append(self.query_vector(term))
            weights.append(term.weight)
        return combine(vectors, weights)

    def _catch_up_with_other_processes(self) -> None:
        """If another process changed the catalog, bring our index up to date before searching.

        When a writer of this process is running, a generation gap is expected (it mirrors
        each batch right after committing it) and searches must not wait for it: skip.
        """
        if self.catalog.generation == self.vector_index.generation:
            return
        if self._write_lock.acquire(blocking=False):
            try:
                self.sync_index()
            finally:
                self._write_lock.release()

    def query_vector(self, term: QueryTerm) -> np.ndarray:
        """The embedding of one query term."""
        if term.kind == "text":
            text = str(term.value).strip()
            if not text:
                raise QueryError("the text query is empty")
            return self.embedder.embed_texts([text])[0]
        if term.kind == "similar":
            return self._indexed_vector(term.value)
        if term.kind == "image":
            decoded = self.decode_query_image(term.value)
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
        return self.embedder.embed_images([decoded.image])[0]

    def decode_query_image(self, path: str | os.PathLike) -> DecodedImage:
        try:
            return decode_file(
                path, min_side=self.embedder.image_size, max_pixels=self.settings.max_image_pixels
            )
        except ImageDecodeError as exc:
            raise QueryError(f"cannot use {path} as a query image: {exc.reason}") from exc

    def _indexed_vector(self, ref: object) -> np.ndarray:
        """The stored vector of an indexed image, by id or by path."""
        if isinstance(ref, (int, np.integer)):
            image_id = int(ref)
        else:
            full = os.path.abspath(os.path.expanduser(os.fspath(ref)))
            image_id = self.catalog.id_for_path(full)
            if image_id is None:
                raise QueryError(f"{ref} is not in the library; index its folder first or search by image")
        vector = self.catalog.embedding_of(image_id, self.model_key)
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
        with self._remote_lock:
            if self._remote_searcher is None:
                self._remote_searcher = RemoteSearcher(
                    cluster, self.remote_spec(), self.settings.exact_search_max_candidates, self.catalog
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
            model=self.settings.model, pretrained=self.settings.pretrained, model_key=self.model_key,
            device=self.settings.device, metric=self.metric, index_dtype=self.vector_index.spec.dtype, stats=stats,
            folders=folders, index_count=len(self.vector_index), index_generation=self.vector_index.generation,
            catalog_generation=self.catalog.generation, index_health=self.index_health,
            errors=self.catalog.errors(error_limit), schema_version=self.catalog.schema_version(),
        )  # fmt: skip


def open_library(settings: Settings, progress: ProgressCallback = no_progress) -> Library:
    """Build a Library from settings: open the catalog, prepare the model, load or rebuild the index."""
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cannot create the data folder {data_dir}: {exc.strerror or exc}") from exc
    catalog = Catalog(data_dir / CATALOG_FILE)
    try:
        embedder = Embedder(
            settings.model, settings.pretrained, settings.device, batch_size=settings.batch_size
        )
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


def _load_index(library: Library, progress: ProgressCallback) -> str:
    """Open the saved index if it matches the catalog, catch it up, or rebuild it."""
    path = library.index_path
    state = VectorIndex.read_state(path)
    loaded = state is not None and path.exists() and library.vector_index.load(path, state)
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
