"""LiveIndex: the one owner of "the vector index is current".

It holds the engine that answers searches (a model, its embedder, the vector index and the
planner over them), the writer locks (a thread lock, and a file lock shared with every other
process on the same library), whether the index has changes not yet saved, and every way the
index follows the catalog (the source of truth): catching up with commits, following a model
or metric switch another process committed, loading the saved file, and rebuilding from the
stored vectors. Each of these is written once, here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from visualfinder.catalog.records import ModelRef
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import LibraryBusyError, StorageError
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.models.embedder import Embedder, precision_of_key
from visualfinder.search.planner import SearchPlanner
from visualfinder.search.vector_index import IndexSpec, VectorIndex

log = logging.getLogger(__name__)

INDEX_FILE = "index.usearch"
LOCK_FILE = "writer.lock"


@dataclass(frozen=True)
class Engine:
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


class LiveIndex:
    """The engine of one library and the rules that keep its index equal to the catalog."""

    def __init__(
        self, settings: Settings, catalog: Catalog, model: ModelRef, embedder: Embedder, metric: str
    ):
        self.settings = settings
        self.catalog = catalog
        self.path = settings.data_dir / INDEX_FILE
        self._engine = self.new_engine(model, metric, embedder)
        # How the index came up on open: "ok", "caught up" or "rebuilt" (status shows it).
        self.health = "ok"
        # One writer at a time: in this process (threads) and across processes (file lock).
        self._write_lock = threading.RLock()
        self._file_lock = None  # a filelock.FileLock, made by the first write (a search takes none)
        self._last_save = time.monotonic()
        self._unsaved = False

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def index(self) -> VectorIndex:
        return self._engine.index

    @property
    def has_unsaved_changes(self) -> bool:
        return self._unsaved

    # --- engines -------------------------------------------------------------------------

    def new_engine(self, model: ModelRef, metric: str, embedder: Embedder | None = None) -> Engine:
        """An engine with an empty index for `model` and `metric` (fill it, then install it)."""
        s = self.settings
        if embedder is None:
            current = getattr(self, "_engine", None)
            if current is not None and current.embedder.key == model.key:
                embedder = current.embedder
            else:
                one_shot = current is not None and current.embedder.one_shot
                embedder = Embedder.for_settings(
                    s, model.name, model.pretrained, precision_of_key(model.key), one_shot=one_shot
                )
        spec = IndexSpec(
            embedder.dim, metric, s.index_dtype, s.hnsw_connectivity, model.key, self.catalog.library_id
        )
        index = VectorIndex(spec, s.hnsw_expansion_add, s.hnsw_expansion_search)
        planner = SearchPlanner(self.catalog, index, metric, model.key, s.exact_search_max_candidates)
        return Engine(model, embedder, index, planner)

    def install(self, engine: Engine, *, saved: bool) -> None:
        """Make `engine` the one that answers (under the writer lock); `saved`: its file is on disk."""
        self._engine = engine
        self._unsaved = not saved

    # --- writing -------------------------------------------------------------------------

    @contextmanager
    def writing(self, wait: float = 0.0) -> Iterator[None]:
        """Hold the writer locks, with the index caught up with the catalog first.

        Raises LibraryBusyError if another process holds the library for longer than `wait`.
        """
        from filelock import FileLock, Timeout

        with self._write_lock:
            if self._file_lock is None:
                self._file_lock = FileLock(str(self.settings.data_dir / LOCK_FILE))
            try:
                self._file_lock.acquire(timeout=wait)
            except Timeout as exc:
                raise LibraryBusyError(
                    f"the library in {self.settings.data_dir} is being changed by another visualfinder "
                    "process; try again when it has finished"
                ) from exc
            try:
                self.follow_catalog()
                self.sync()  # another process may have committed since we last looked
                yield
            finally:
                self._file_lock.release()

    def writing_here(self) -> threading.RLock:
        """The writer lock of this process alone: for a short catalog write (a folder added) that
        must not interleave with a writer thread's transaction, and needs no index change."""
        return self._write_lock

    def after_commit(self) -> None:
        """A batch was committed and mirrored into the index: save now and then on long runs."""
        self._unsaved = True
        if time.monotonic() - self._last_save > self.settings.index_save_interval_s:
            self.save()

    def save(self) -> None:
        """Write the index file (the caller holds the writer locks)."""
        self.index.save(self.path)
        self._last_save = time.monotonic()
        self._unsaved = False

    def save_pending(self, wait: float = 5.0) -> bool:
        """Write pending index changes to disk; False when there were none."""
        if not self._unsaved:
            return False
        with self.writing(wait=wait):
            self.save()
        return True

    def close(self) -> None:
        """Save what is pending if the library may be written now; the next open catches up otherwise."""
        if not self._unsaved:
            return
        try:
            self.save_pending(wait=5.0)
        except LibraryBusyError:
            log.warning(
                "index not saved on close: another process holds the library; it will catch up on open"
            )
        except StorageError as exc:  # the index is a cache: the next open catches it up or rebuilds it
            log.warning("index not saved on close: %s", exc)

    # --- following the catalog -----------------------------------------------------------

    def open(self, progress: ProgressCallback = no_progress) -> str:
        """On open: the saved index if it matches the catalog (caught up), else a rebuild, saved."""
        health = self._load_or_fill(self._engine, progress, view=self.settings.index_memory_map)
        if health == "rebuilt":
            try:
                with self.writing():
                    self.save()
            except LibraryBusyError:
                pass  # the writer will save it; we keep ours in memory
            except StorageError as exc:  # searches still work from the rebuilt index in memory
                log.warning("%s", exc)
        self.health = health
        return health

    def follow_catalog(self) -> None:
        """Pick up a model or metric switch that another process committed to the catalog.

        In this process the switching thread installs its new engine itself, right after its
        commit; while a writer of this process holds the lock, searches go on with the engine
        they have (never waiting for it).
        """
        model_key, metric = self.catalog.model_and_metric()
        if model_key in (None, self._engine.model.key) and metric in (None, self._engine.metric):
            return
        if not self._write_lock.acquire(blocking=False):
            return
        try:
            model = self.catalog.active_model() or self._engine.model
            metric = metric or self._engine.metric
            if model.key == self._engine.model.key and metric == self._engine.metric:
                return
            log.info("the library now uses %s with the %s metric; reloading its index", model.key, metric)
            engine = self.new_engine(model, metric)
            self._load_or_fill(engine)
            self._engine = engine
            self.sync()
        finally:
            self._write_lock.release()

    def catch_up(self, wait_s: float = 0.0) -> None:
        """If another process changed the catalog, bring the index up to date before a read.

        When a writer of this process is running, a generation gap is expected (it mirrors
        each batch right after committing it) and readers must not wait for it: skip, unless
        told to wait up to `wait_s`.
        """
        if self.catalog.generation == self.index.generation:
            return
        if self._write_lock.acquire(timeout=wait_s):  # 0: one try, no wait
            try:
                self.sync()
            finally:
                self._write_lock.release()

    def sync(self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> str:
        """Bring the in-memory index up to the catalog's generation; returns what was done."""
        index, key = self.index, self._engine.model.key
        catalog_gen = self.catalog.generation
        if index.generation == catalog_gen and len(index) == self.catalog.count_embedded(key):
            return "current"
        if index.generation > catalog_gen:
            log.warning(
                "the vector index is newer than the catalog (generation %d > %d: the catalog's last "
                "commits were lost, e.g. in a power cut); rebuilding it from the catalog",
                index.generation, catalog_gen,
            )  # fmt: skip
            self.fill(self._engine, progress, cancel)
            self._unsaved = True
            return "rebuilt"
        # Catch up: vectors written since our generation, then drop ids the catalog no longer has.
        for ids, vectors in self.catalog.iter_embeddings(key, min_generation=index.generation + 1):
            index.add(ids, vectors)
        wanted = self.catalog.embedded_ids(key)
        present = index.keys()
        index.remove(np.setdiff1d(present, wanted, assume_unique=True).tolist())
        missing = np.setdiff1d(wanted, present, assume_unique=True)
        if len(missing):
            for ids, vectors in self.catalog.iter_embeddings(key, ids=missing.tolist()):
                index.add(ids, vectors)
        index.generation = catalog_gen
        self._unsaved = True
        return "caught up"

    def fill(
        self,
        engine: Engine,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        generation: int | None = None,
    ) -> None:
        """Rebuild `engine`'s index from the catalog's stored vectors of its model (no re-embedding)."""
        key = engine.model.key
        engine.index.rebuild(
            self.catalog.iter_embeddings(key),
            self.catalog.count_embedded(key),
            self.catalog.generation if generation is None else generation,
            progress,
            cancel,
        )

    def rebuild(self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> int:
        """Rebuild the active index from the stored vectors and save it; returns its size."""
        with self.writing():
            self.fill(self._engine, progress, cancel)
            progress(Progress("saving index", 0, 0))
            self.save()
            return len(self.index)

    def _load_or_fill(
        self, engine: Engine, progress: ProgressCallback = no_progress, view: bool = False
    ) -> str:
        """Load the saved index into `engine` if it is the one its model and metric need (then
        catch it up), or fill it from the stored vectors: "ok", "caught up" or "rebuilt"."""
        path = self.path
        state = VectorIndex.read_state(path)
        if state is not None and path.exists() and engine.index.load(path, state, view=view):
            if engine is not self._engine:
                return "ok"  # a switch another process made: it saved the index it built
            health = self.sync(progress)
            return "ok" if health == "current" else health
        if self.catalog.count_embedded(engine.model.key) == 0:
            engine.index.generation = self.catalog.generation
            return "ok"
        if path.exists() or state is not None:
            log.warning("the vector index does not match the catalog; rebuilding it from stored embeddings")
        self.fill(engine, progress)
        self._unsaved = True
        return "rebuilt"
