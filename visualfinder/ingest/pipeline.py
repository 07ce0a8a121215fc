"""The one indexing pipeline, used by the CLI, the watcher and the GUI.

scan plan -> read + hash + decode + thumbnail + preprocess (thread pool, a few batches ahead)
-> embed in batches (calling thread) -> one catalog transaction per batch -> vector index.

A crash loses at most the batch in flight; the catalog is never left half-written. A bad
file is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visualfinder.catalog.store import AppliedChanges, Catalog, CatalogChanges, ImageWrite, StatRow
from visualfinder.errors import Cancelled, ImageDecodeError, StorageError
from visualfinder.ingest.decoders import Decoder, choose_decode_backend, open_decoder
from visualfinder.ingest.imaging import (
    content_hash,
    decode_image,
    library_decode_side,
    read_image_file,
    thumbnail_path,
    write_thumbnail,
)
from visualfinder.ingest.retry import PERMANENT, kind_of, next_attempt, next_retry_at
from visualfinder.ingest.scanner import FileStat, ScanPlan
from visualfinder.ingest.workpool import Task, TaskTimedOut, WorkerPool
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.models.embedder import Embedder
from visualfinder.search.vector_index import VectorIndex

log = logging.getLogger(__name__)

# Commit at least this often even when nothing needs the model (moves, errors, copies).
_MAX_PENDING_CHANGES = 512
# Decoded files kept ready ahead of the model, in batches (tests/benchmarks/test_indexing_speed.py).
PREFETCH_BATCHES = 2


@dataclass(frozen=True)
class FileError:
    path: str
    reason: str
    kind: str = PERMANENT  # or TRANSIENT: tried again on later scans (see ingest/retry.py)


@dataclass
class IndexReport:
    """What an indexing run did. `errors` are the files skipped in this run, with reasons."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    reused: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: list[FileError] = field(default_factory=list)
    folder_errors: list[tuple[str, str]] = field(default_factory=list)
    # Paths left for a later run: files still being written, and removals waiting for them.
    deferred: list[str] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    # Images that got product metadata from sidecar files (photo.jpg.json, products.csv).
    metadata_updated: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.moved or self.reused or self.removed or self.errors)

    def merge(self, other: IndexReport) -> None:
        for name in ("added", "updated", "moved", "reused", "removed", "unchanged", "metadata_updated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.folder_errors += other.folder_errors
        self.deferred += other.deferred
        self.cancelled = self.cancelled or other.cancelled
        self.seconds += other.seconds

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.updated} updated", f"{self.moved} moved",
                 f"{self.removed} removed", f"{self.unchanged} unchanged", f"{len(self.errors)} skipped"]  # fmt: skip
        if self.reused:
            parts.insert(3, f"{self.reused} copies reused")
        return ", ".join(parts)


@dataclass
class _Prepared:
    """A file after the worker stage: decoded, known by content, unchanged, or failed."""

    stat: FileStat
    row: StatRow | None
    kind: str  # "decoded" | "known" | "touch" | "error"
    digest: str | None = None
    reason: str | None = None
    transient: bool = False  # an error that may pass (see ingest/retry.py)
    width: int | None = None
    height: int | None = None
    format: str | None = None
    thumb: str | None = None
    tensor: object = None


@dataclass
class _Reembed:
    """A catalogued image being prepared for another model (see `IndexingPipeline.reembed`)."""

    id: int
    path: str
    digest: str | None
    tensor: object = None
    error: str | None = None
    transient: bool = False  # the error may pass (see ingest/retry.py)


@dataclass
class _Run:
    """Mutable state of one pipeline run, between commits."""

    movable: dict[str, StatRow]
    adopt: Callable[[StatRow], bool] | None = None
    moved_ids: set[int] = field(default_factory=set)
    batch: list[_Prepared] = field(default_factory=list)
    changes: CatalogChanges = field(default_factory=CatalogChanges)
    updated_vectors: list[tuple[int, np.ndarray]] = field(default_factory=list)
    removed_ids: list[int] = field(default_factory=list)


class IndexingPipeline:
    """Runs scan plans through decode, embedding and commit."""

    def __init__(
        self,
        catalog: Catalog,
        embedder: Embedder,
        index: VectorIndex,
        thumbs_dir: Path,
        *,
        thumbnail_size: int = 256,
        max_pixels: int = 250_000_000,
        decode_workers: int = 0,
        file_time_limit: float | None = None,
        on_commit: Callable[[], None] | None = None,
        decode_backend: str = "auto",
    ):
        self.catalog = catalog
        self.embedder = embedder
        self.index = index
        self.thumbs_dir = thumbs_dir
        self.thumbnail_size = thumbnail_size
        self.max_pixels = max_pixels
        self._decode_workers = decode_workers
        # Reading + decoding one file may take at most this long (None: no limit); see workpool.
        self.file_time_limit = file_time_limit
        self.on_commit = on_commit
        self._reusable_hashes: set[str] = set()
        # threads | processes | gpu | auto (ingest/decoders.py); the decoder of the current run.
        self.decode_backend = decode_backend
        self._decoder: Decoder | None = None
        # Run in each decoder process as it starts (tests install their faults there).
        self.process_initializer: Callable[[], None] | None = None

    @property
    def _decode_side(self) -> int:
        return library_decode_side(self.embedder.image_size, self.thumbnail_size)

    @property
    def decode_workers(self) -> int:
        # Resolved lazily: finding the device imports torch, which an unchanged rescan never needs.
        return self._decode_workers or default_decode_workers(self.embedder.device)

    def run(
        self,
        plan: ScanPlan,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        remove_missing: bool = True,
    ) -> IndexReport:
        """Apply a scan plan. On cancel, what was committed stays and the report says so."""
        started = time.perf_counter()
        report = IndexReport(unchanged=plan.unchanged, folder_errors=list(plan.folder_errors))
        work: list[tuple[FileStat, StatRow | None]] = [(s, None) for s in plan.new] + list(plan.changed)
        key = self.embedder.key
        # Missing rows whose vector can follow their content to a new path (a move).
        run = _Run(movable={r.content_hash: r for r in plan.missing
                            if r.has_embedding and r.model_key == key and r.content_hash}, adopt=plan.adopt)  # fmt: skip
        self._reusable_hashes = set(run.movable)
        try:
            if work:
                self.embedder.load()
                self._process(work, run, report, progress, cancel)
            if remove_missing and (cancel is None or not cancel.cancelled):
                self._remove([r.id for r in plan.missing if r.id not in run.moved_ids], report, progress)
        except Cancelled:
            report.cancelled = True
        report.seconds = time.perf_counter() - started
        return report

    # --- stages --------------------------------------------------------------------------

    def _process(self, work, run: _Run, report: IndexReport, progress: ProgressCallback, cancel) -> None:
        total = len(work)
        done = 0
        progress(Progress("indexing", 0, total))
        self._decoder = self._open_decoder(total)
        pool = WorkerPool(self._decode_threads(), "vf-decode")
        try:
            for prepared in self._prepare_all(pool, work, cancel):
                self._route(prepared, run, report)
                done += 1
                if len(run.batch) >= self.embedder.batch_size or len(run.changes) >= _MAX_PENDING_CHANGES:
                    self._commit(run, report)
                    progress(Progress("indexing", done, total, prepared.stat.path))
                elif done % 16 == 0:
                    progress(Progress("indexing", done, total, prepared.stat.path))
            self._commit(run, report)
            progress(Progress("indexing", done, total))
        finally:
            self._close_decoder()
            pool.shutdown(wait=True, timeout=self.file_time_limit)

    def _commit(self, run: _Run, report: IndexReport) -> None:
        """Embed the pending batch, commit every pending change in one transaction, mirror to the index."""
        if run.batch:
            self._embed_batch(run, report)
        if not len(run.changes):
            return
        changes = run.changes
        with_vectors = [(i, w.embedding) for i, w in enumerate(changes.inserts) if w.embedding is not None]
        applied = self.catalog.apply(changes)
        adds = [(applied.inserted_ids[i], vector) for i, vector in with_vectors] + run.updated_vectors
        self._update_index(applied, adds, run.removed_ids + list(changes.deletes))
        run.changes, run.updated_vectors, run.removed_ids = CatalogChanges(), [], []

    def _prepare_all(self, pool: WorkerPool, work, cancel) -> Iterator[_Prepared]:
        """Prepared files in input order (see `_ahead`); a file over the time limit is an error."""

        def timed_out(stat: FileStat, row: StatRow | None) -> _Prepared:
            return _Prepared(stat, row, "error", reason=self._too_long(), transient=True)

        return self._ahead(pool, work, self._prepare, timed_out, cancel)

    def _ahead(self, pool: WorkerPool, items, prepare, timed_out, cancel) -> Iterator:
        """`prepare_ahead` with this pipeline's look-ahead and per-file time limit. Indexing and
        the model switch both prepare their files through here."""
        ahead = max(PREFETCH_BATCHES * self.embedder.batch_size, 4 * self.decode_workers)
        return prepare_ahead(pool, items, prepare, timed_out, cancel, ahead=ahead, limit=self.file_time_limit)

    def _too_long(self) -> str:
        return (
            f"took too long to read and decode (over {self.file_time_limit:g} s); tried again on later scans"
        )

    # --- re-embedding for another model (the model switch) -------------------------------

    def reembed(
        self, rows: Iterable[tuple[int, str, str | None]], cancel: CancelToken | None = None
    ) -> Iterator[tuple[list[tuple[int, str | None, np.ndarray]], list[tuple[int, FileError]]]]:
        """Vectors of this pipeline's model for catalogued images `(id, path, content hash)`.

        The same pool, look-ahead, per-file time limit and cancellation as indexing; yields,
        batch by batch, the vectors to store and the files that could not be used. Nothing is
        written here: the caller stores the vectors beside the active model's.
        """
        self.embedder.load()
        batch: list[_Reembed] = []
        skipped: list[tuple[int, FileError]] = []

        def timed_out(image_id: int, path: str, digest: str | None) -> _Reembed:
            return _Reembed(image_id, path, digest, error=self._too_long(), transient=True)

        pool = WorkerPool(self.decode_workers, "vf-reembed")
        try:
            for item in self._ahead(pool, rows, self._prepare_for_model, timed_out, cancel):
                if item.error:
                    skipped.append((item.id, FileError(item.path, item.error, kind_of(item.transient))))
                else:
                    batch.append(item)
                if len(batch) >= self.embedder.batch_size:
                    yield self._embed_for_model(batch), skipped
                    batch, skipped = [], []
            if batch or skipped:
                yield self._embed_for_model(batch), skipped
        finally:
            pool.shutdown(wait=True, timeout=self.file_time_limit)

    def _prepare_for_model(self, image_id: int, path: str, digest: str | None) -> _Reembed:
        """Worker: re-read a catalogued file, check it is the content that was indexed, preprocess."""
        item = _Reembed(image_id, path, digest)
        try:
            data = read_image_file(path)
            if digest is not None and content_hash(data) != digest:
                item.error = "changed since it was indexed (run `visualfinder index`)"
                return item
            decoded = decode_image(data, min_side=self._decode_side, max_pixels=self.max_pixels, path=path)
            item.tensor = self.embedder.preprocess(decoded.image)
        except ImageDecodeError as exc:
            item.error, item.transient = exc.reason, exc.transient
        except Exception as exc:  # a bug must cost one file, not the switch
            log.exception("unexpected error while preparing %s", path)
            item.error, item.transient = f"unexpected error ({type(exc).__name__}: {exc})", True
        return item

    def _embed_for_model(self, batch: list[_Reembed]) -> list[tuple[int, str | None, np.ndarray]]:
        if not batch:
            return []
        vectors = self.embedder.embed_batch([item.tensor for item in batch])
        return [(item.id, item.digest, vector) for item, vector in zip(batch, vectors, strict=True)]

    def _prepare(self, stat: FileStat, row: StatRow | None) -> _Prepared:
        """Worker: read once, hash, and decode only when the content is new to the catalog.

        A file's problems end as its error record; only the data folder's (StorageError) stop the run.
        """
        try:
            return self._prepare_file(stat, row)
        except (StorageError, Cancelled):
            raise
        except Exception as exc:  # a bug must cost one file, not the run: record it and go on
            log.exception("unexpected error while preparing %s", stat.path)
            return _Prepared(
                stat, row, "error", reason=f"unexpected error ({type(exc).__name__}: {exc})", transient=True
            )

    def _prepare_file(self, stat: FileStat, row: StatRow | None) -> _Prepared:
        if stat.problem:
            return _Prepared(stat, row, "error", reason=stat.problem, transient=stat.problem_transient)
        try:
            data = read_image_file(stat.path)
        except ImageDecodeError as exc:
            return _Prepared(stat, row, "error", reason=exc.reason, transient=exc.transient)
        digest = content_hash(data)
        key = self.embedder.key
        if row is not None and row.content_hash == digest and row.has_embedding and row.model_key == key:
            return _Prepared(stat, row, "touch", digest=digest)
        if digest in self._reusable_hashes or self.catalog.embedded_source(digest, key) is not None:
            return _Prepared(stat, row, "known", digest=digest)
        return self._decode(stat, row, data, digest)

    def _decode(self, stat: FileStat, row: StatRow | None, data: bytes, digest: str) -> _Prepared:
        if self._decoder is not None:
            offloaded = self._decode_offloaded(stat, row, data, digest)
            if offloaded is not None:
                return offloaded
        try:
            decoded = decode_image(
                data, min_side=self._decode_side, max_pixels=self.max_pixels, path=stat.path
            )
            thumb = write_thumbnail(
                decoded.image, self.thumbnail_size, thumbnail_path(self.thumbs_dir, digest)
            )
            tensor = self.embedder.preprocess(decoded.image)
        except ImageDecodeError as exc:
            return _Prepared(stat, row, "error", digest=digest, reason=exc.reason, transient=exc.transient)
        except OSError as exc:
            # The data folder is full or read-only: not this image's fault, so it must not be
            # recorded as a bad file (those are not retried). Stop; the next run picks it up.
            raise StorageError(
                f"cannot write thumbnails to {self.thumbs_dir}: {exc.strerror or exc} "
                "(free some disk space or make the data folder writable; nothing was lost)"
            ) from exc
        return _Prepared(stat, row, "decoded", digest=digest, width=decoded.width, height=decoded.height,
                         format=decoded.format, thumb=str(thumb), tensor=tensor)  # fmt: skip

    def _route(self, p: _Prepared, run: _Run, report: IndexReport) -> None:
        """Turn a prepared file into catalog changes (embedding happens at commit)."""
        s = p.stat
        write = ImageWrite(s.path, s.folder_id, s.size, s.mtime_ns, content_hash=p.digest)
        if p.kind == "error":
            write.error = p.reason or "unknown error"
            write.error_kind = kind_of(p.transient)
            write.attempts = next_attempt(p.row, write.error_kind)
            write.retry_at = next_retry_at(write.error_kind, write.attempts, time.time())
            write.ctime_ns = s.ctime_ns or None
            report.errors.append(FileError(s.path, write.error, write.error_kind))
            if p.row is None:
                run.changes.inserts.append(write)
            else:
                run.changes.updates.append((p.row.id, write))
                run.removed_ids.append(p.row.id)
        elif p.kind == "touch":  # same bytes, new stat or folder: keep everything else
            run.changes.moves.append((p.row.id, write))
            report.unchanged += 1
        elif p.kind == "known":
            self._route_known(p, write, run, report)
        else:
            run.batch.append(p)

    def _route_known(self, p: _Prepared, write: ImageWrite, run: _Run, report: IndexReport) -> None:
        """Content the catalog already embedded: a move keeps its row, a copy reuses the vector."""
        source_row = run.movable.get(p.digest)
        if p.row is None and (source_row is None or source_row.id in run.moved_ids) and run.adopt is not None:
            source_row = self._adoptable(p.digest, run)
        if p.row is None and source_row is not None and source_row.id not in run.moved_ids:
            run.moved_ids.add(source_row.id)
            run.changes.moves.append((source_row.id, write))
            report.moved += 1
            return
        source = self.catalog.embedded_source(p.digest, self.embedder.key)
        if source is None:  # its twin vanished meanwhile: decode after all
            try:
                data = read_image_file(p.stat.path)
            except ImageDecodeError as exc:
                failed = _Prepared(
                    p.stat, p.row, "error", digest=p.digest, reason=exc.reason, transient=exc.transient
                )
                self._route(failed, run, report)
                return
            self._route(self._decode(p.stat, p.row, data, p.digest), run, report)
            return
        write.width, write.height, write.format = source.width, source.height, source.format
        write.embedding, write.model_key, write.thumb_path = (
            source.embedding,
            self.embedder.key,
            source.thumb_path,
        )
        self._stage(p.row, write, run, report)
        report.reused += 1

    def _adoptable(self, digest: str, run: _Run) -> StatRow | None:
        """A catalogued image with this content whose file vanished: the new file is its move."""
        key = self.embedder.key
        for row in self.catalog.stat_rows_with_hash(digest, key):
            if row.id not in run.moved_ids and row.has_embedding and row.model_key == key and run.adopt(row):
                return row
        return None

    def _embed_batch(self, run: _Run, report: IndexReport) -> None:
        vectors = self.embedder.embed_batch([p.tensor for p in run.batch])
        for p, vector in zip(run.batch, vectors, strict=True):
            s = p.stat
            write = ImageWrite(s.path, s.folder_id, s.size, s.mtime_ns, content_hash=p.digest, width=p.width,
                               height=p.height, format=p.format, embedding=vector, model_key=self.embedder.key,
                               thumb_path=p.thumb)  # fmt: skip
            self._stage(p.row, write, run, report)
        run.batch.clear()

    @staticmethod
    def _stage(row: StatRow | None, write: ImageWrite, run: _Run, report: IndexReport) -> None:
        if row is None:
            run.changes.inserts.append(write)
            report.added += 1
        else:
            run.changes.updates.append((row.id, write))
            run.updated_vectors.append((row.id, write.embedding))
            report.updated += 1

    def _remove(self, ids: list[int], report: IndexReport, progress: ProgressCallback) -> None:
        for start in range(0, len(ids), _MAX_PENDING_CHANGES):
            chunk = ids[start : start + _MAX_PENDING_CHANGES]
            applied = self.catalog.apply(CatalogChanges(deletes=chunk))
            self._update_index(applied, [], chunk)
            report.removed += len(chunk)
            progress(Progress("removing", report.removed, len(ids)))

    def _update_index(
        self, applied: AppliedChanges, adds: list[tuple[int, np.ndarray]], removes: list[int]
    ) -> None:
        """Mirror a committed batch into the vector index, then advance its generation."""
        if removes:
            self.index.remove(removes)
        if adds:
            ids = np.array([i for i, _ in adds], dtype=np.uint64)
            self.index.add(ids, np.vstack([v for _, v in adds]))
        self.index.generation = applied.generation
        if self.on_commit is not None:
            self.on_commit()

    # --- decoding in processes or on the GPU (ingest/decoders.py) ------------------------

    def _open_decoder(self, files: int) -> Decoder | None:
        device = self.embedder.device
        gpu = False
        if device == "cuda":
            from visualfinder.ingest.gpu_decode import gpu_decode_available

            gpu = gpu_decode_available()
        backend = choose_decode_backend(self.decode_backend, device, os.cpu_count() or 1, files, gpu)
        log.info("decoding %d files with %s (%d workers)", files, backend, self.decode_workers)
        return open_decoder(backend, self.embedder, self.decode_workers, decode_side=self._decode_side,
                            max_pixels=self.max_pixels, thumbnail_size=self.thumbnail_size,
                            thumbs_dir=self.thumbs_dir, initializer=self.process_initializer)  # fmt: skip

    def _decode_threads(self) -> int:
        """Threads of the run's pool: one per decoder process, or enough to fill a GPU decode batch."""
        if self._decoder is not None and hasattr(self._decoder, "max_batch"):
            return max(self.decode_workers, self._decoder.max_batch)
        return self.decode_workers

    def _close_decoder(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.close()

    def _decode_offloaded(
        self, stat: FileStat, row: StatRow | None, data: bytes, digest: str
    ) -> _Prepared | None:
        """Decode in the run's decoder; None when it leaves this file to the calling thread."""
        decoder = self._decoder
        if decoder is None:  # closed by a cancel meanwhile
            raise Cancelled("indexing cancelled")
        try:
            done = decoder.decode(stat.path, data, digest, self.file_time_limit)
        except ImageDecodeError as exc:
            return _Prepared(stat, row, "error", digest=digest, reason=exc.reason)
        except TaskTimedOut:
            return _Prepared(stat, row, "error", digest=digest, reason=self._too_long())
        except OSError as exc:
            raise StorageError(
                f"cannot write thumbnails to {self.thumbs_dir}: {exc.strerror or exc} "
                "(free some disk space or make the data folder writable; nothing was lost)"
            ) from exc
        if done is None:
            return None
        return _Prepared(stat, row, "decoded", digest=done.digest, width=done.width, height=done.height,
                         format=done.format, thumb=done.thumb, tensor=done.tensor)  # fmt: skip


def prepare_ahead(
    pool: WorkerPool,
    items: Iterable[tuple],
    prepare: Callable[..., object],
    timed_out: Callable[..., object],
    cancel: CancelToken | None,
    *,
    ahead: int,
    limit: float | None,
) -> Iterator:
    """`prepare(*item)` on the pool for each item, yielded in input order, at most `ahead` items
    in flight (decoding runs ahead of the model by a bounded amount).

    An item still being read or decoded after `limit` seconds yields `timed_out(*item)` instead
    and its worker is replaced, so one pathological file cannot stall the run. The pipeline
    (indexing, the model switch) and the batch match prepare their files through here.
    """
    queue: deque[Task] = deque()
    items = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(queue) < ahead:
            try:
                item = next(items)
            except StopIteration:
                exhausted = True
                break
            queue.append(pool.submit(prepare, *item))
        if not queue:
            return
        if cancel is not None and cancel.cancelled:
            for task in queue:
                task.future.cancel()
            raise Cancelled("cancelled")
        task = queue.popleft()
        try:
            yield pool.result(task, limit, cancel)
        except TaskTimedOut:
            log.warning("%s: still decoding after %.0f s; skipped", _task_path(task), limit)
            yield timed_out(*task.args)


def _task_path(task: Task) -> str:
    """The file a prepare task works on: a FileStat's path, or the path beside an image id."""
    first = task.args[0]
    if isinstance(first, FileStat):
        return first.path
    return str(task.args[1] if len(task.args) > 1 else first)


def default_decode_workers(device: str) -> int:
    cpus = os.cpu_count() or 2
    if device in ("cuda", "mps"):
        # The GPU waits on the decoders: every core but one (measured on 16 cores with an H200:
        # 15 decoders index 1.2-1.4x faster than 8; beyond that the GIL bounds the decoders).
        return max(2, min(16, cpus - 1))
    # On CPU the model wants the cores too; one decoder per two cores keeps it fed.
    return max(1, cpus // 2)
