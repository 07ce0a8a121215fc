"""The vector index: a USearch HNSW graph keyed by image id, and exact search beside it.

The index is a cache of the catalog's embeddings. Its sidecar JSON records the catalog
generation it reflects, so on open we can tell whether it is current, behind (catch up from
the catalog) or unusable (rebuild). Saves are atomic: temp file, fsync, rename.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xxhash


def _preload_system_libstdcxx() -> None:
    """Load the system libstdc++ globally before usearch.

    usearch's Linux wheels link libstdc++ statically and export its symbols (GNU unique ones
    among them). Loaded first, they take over the locale facets of any C++ extension loaded
    later against the system libstdc++: `import onnxruntime` after `import usearch` segfaults.
    With the system copy loaded first every extension shares it (importing torch first has
    the same effect, which is why it only shows when the ONNX backend starts without torch).
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
        except OSError:  # no system libstdc++ (static or musl builds): nothing to share
            pass


_preload_system_libstdcxx()

from usearch.index import Index, MetricKind  # noqa: E402 - must follow the preload above
from usearch.index import search as usearch_search  # noqa: E402

from visualfinder.errors import StorageError  # noqa: E402
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress  # noqa: E402

log = logging.getLogger(__name__)

USEARCH_METRICS = {"cosine": MetricKind.Cos, "ip": MetricKind.IP, "l2": MetricKind.L2sq}
SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class IndexSpec:
    """Everything that must match for a saved index file to be reusable."""

    ndim: int
    metric: str
    dtype: str
    connectivity: int
    model_key: str
    # The catalog this index was built from: a file left beside a recreated catalog must not be trusted.
    library_id: str


@dataclass(frozen=True)
class IndexState:
    """What the sidecar says about the saved index file."""

    spec: IndexSpec
    generation: int
    count: int
    bytes: int = -1  # file size at save; -1 in sidecars written before it was recorded
    # xxh3-128 of the file. A damaged graph can crash usearch on search, so a file is used only
    # if it hashes to this; "" in sidecars written before it was recorded (then not checked).
    checksum: str = ""


class VectorIndex:
    """Thread-safe wrapper around one usearch.Index with metric-consistent scores.

    A saved index can be opened memory-mapped (`load(..., view=True)`): searches start at once
    and the OS pages the graph in as it is used; the first change copies it into memory.
    With dtype "i8" (quantized) distances are approximate: callers re-score the top
    candidates from the catalog's float16 vectors (`SearchPlanner` does).
    """

    def __init__(self, spec: IndexSpec, expansion_add: int = 128, expansion_search: int = 64):
        self.spec = spec
        self._lock = threading.RLock()
        self._expansion_add = expansion_add
        self._index = self._new_index(expansion_search)
        self._viewed = False
        self.generation = 0

    def _new_index(self, expansion_search: int) -> Index:
        return Index(
            ndim=self.spec.ndim,
            metric=USEARCH_METRICS[self.spec.metric],
            dtype=self.spec.dtype,
            connectivity=self.spec.connectivity,
            expansion_add=self._expansion_add,
            expansion_search=expansion_search,
        )

    @property
    def quantized(self) -> bool:
        """True when stored vectors are coarser than the catalog's (search results need re-scoring)."""
        return self.spec.dtype == "i8"

    @property
    def is_view(self) -> bool:
        """True while the index is a read-only memory map of its file."""
        return self._viewed

    # --- persistence ---------------------------------------------------------------------

    @staticmethod
    def read_state(path: Path) -> IndexState | None:
        """The sidecar of a saved index, or None when it is missing or unreadable."""
        try:
            raw = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
            if raw.get("format") != SIDECAR_FORMAT:
                return None
            return IndexState(
                IndexSpec(**raw["spec"]),
                int(raw["generation"]),
                int(raw["count"]),
                int(raw.get("bytes", -1)),
                str(raw.get("xxh3", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load(self, path: Path, state: IndexState, view: bool = False) -> bool:
        """Load (or memory-map) a saved index; False (with a warning) when it is missing or damaged."""
        if state.spec != self.spec:
            return False
        try:
            size = os.path.getsize(path)
            if state.bytes >= 0 and size != state.bytes:
                # A mapped file must be whole: reading past a truncated end would crash, not raise.
                raise ValueError(f"file is {size} bytes, sidecar says {state.bytes}")
            if state.checksum and file_checksum(path) != state.checksum:
                raise ValueError("contents do not match the checksum in its sidecar")
            meta = Index.metadata(os.fspath(path))
            if not meta or meta["dimensions"] != self.spec.ndim or meta["count_present"] != state.count:
                raise ValueError("header does not match its sidecar")
            with self._lock:
                if view:
                    self._index.view(os.fspath(path))
                else:
                    self._index.load(os.fspath(path))
                self._viewed = view
                if len(self._index) != state.count:
                    raise ValueError(f"holds {len(self._index)} vectors, sidecar says {state.count}")
                self.generation = state.generation
            return True
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("vector index %s is damaged (%s); it will be rebuilt from the catalog", path, exc)
            with self._lock:
                self._index = self._new_index(self._index.expansion_search)
                self._viewed = False
            return False

    def save(self, path: Path) -> None:
        """Write the index and then its sidecar, each atomically (temp file, fsync, rename, fsync folder).

        Raises StorageError when the data folder cannot take it (disk full, read-only); the
        temp files are removed and the previous index stays usable or is rebuilt on open.
        """
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._index.save(os.fspath(tmp))
                expected = self._index.serialized_length
                state = {"format": SIDECAR_FORMAT, "spec": asdict(self.spec), "generation": self.generation,
                         "count": len(self._index), "bytes": expected}  # fmt: skip
            written = os.path.getsize(tmp)
            if written != expected:  # a short write on a filling disk must not pass for a whole file
                raise OSError(f"short write: {written} of {expected} bytes")
            _fsync_file(tmp)
            state["xxh3"] = file_checksum(tmp)
            # The old sidecar must not vouch for the new file if we crash between the two renames.
            sidecar_path(path).unlink(missing_ok=True)
            os.replace(tmp, path)
            # The rename must reach the disk before a sidecar that describes the new file does.
            _fsync_dir(path.parent)
            _atomic_write_text(sidecar_path(path), json.dumps(state))
        except (OSError, RuntimeError) as exc:  # usearch reports a failed write as RuntimeError
            for leftover in (tmp, sidecar_path(path).with_name(sidecar_path(path).name + ".tmp")):
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:
                    pass
            raise StorageError(_describe_save_error(path, exc)) from exc

    def _writable(self) -> Index:
        """The index, copied into memory first if it is a read-only map (caller holds the lock)."""
        if self._viewed:
            self._index = self._index.copy()
            self._viewed = False
        return self._index

    # --- mutation ------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors (an existing id is replaced)."""
        if len(ids) == 0:
            return
        ids = np.asarray(ids, dtype=np.uint64)
        with self._lock:
            index = self._writable()
            present = np.atleast_1d(index.contains(ids))
            if present.any():
                index.remove(ids[present])
            index.add(ids, np.asarray(vectors, dtype=np.float32), threads=1)

    def remove(self, ids: Iterable[int]) -> None:
        ids = np.asarray(list(ids), dtype=np.uint64)
        if len(ids):
            with self._lock:
                self._writable().remove(ids)

    def clear(self) -> None:
        with self._lock:
            self._index = self._new_index(self._index.expansion_search)
            self._viewed = False
            self.generation = 0

    def rebuild(
        self,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        total: int,
        generation: int,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> None:
        """Replace the whole index with the given (ids, vectors) chunks (all cores, progress per chunk)."""
        fresh = self._new_index(self._index.expansion_search)
        done = 0
        progress(Progress("rebuilding index", 0, total))
        for ids, vectors in chunks:
            if cancel is not None:
                cancel.raise_if_cancelled()
            fresh.add(ids, np.asarray(vectors, dtype=np.float32), threads=0)
            done += len(ids)
            progress(Progress("rebuilding index", done, total))
        with self._lock:
            self._index = fresh
            self._viewed = False
            self.generation = generation

    # --- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._index.keys, dtype=np.uint64)

    def contains(self, image_id: int) -> bool:
        return bool(self._index.contains(int(image_id)))

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, float32 vectors) for the ids present in the index (dequantized for i8)."""
        ids = np.asarray(ids, dtype=np.uint64)
        if len(ids) == 0:
            return ids, np.zeros((0, self.spec.ndim), dtype=np.float32)
        with self._lock:
            present = np.atleast_1d(self._index.contains(ids))
            found = ids[present]
            if len(found) == 0:
                return found, np.zeros((0, self.spec.ndim), dtype=np.float32)
            vectors = _get_matrix(self._index, found, self.spec.dtype)
        return found, vectors.reshape(len(found), self.spec.ndim)

    def exact_search(
        self, query: np.ndarray, ids: np.ndarray, count: int, chunk: int = 65_536
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top `count` among `ids` (those present): (ids, distances), best first.

        The stored rows are scanned by usearch's SIMD kernels in their own precision, so at
        i8 the distances rank well but are approximate (callers re-score, as for `search`).
        """
        ids = np.asarray(ids, dtype=np.uint64)
        best_ids: list[np.ndarray] = []
        best_dist: list[np.ndarray] = []
        for start in range(0, len(ids), chunk):
            found, rows = self.gather(ids[start : start + chunk])
            part_ids, part_dist = self.scan(query, found, rows, count)
            best_ids.append(part_ids)
            best_dist.append(part_dist)
        if not best_ids:
            return np.zeros(0, np.uint64), np.zeros(0, np.float32)
        all_ids, all_dist = np.concatenate(best_ids), np.concatenate(best_dist)
        order = np.lexsort((all_ids, all_dist))[:count]
        return all_ids[order], all_dist[order]

    def gather(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of `ids` present in the index, and their stored rows (for `scan`)."""
        ids = np.asarray(ids, dtype=np.uint64)
        with self._lock:
            if len(ids) == 0:
                return ids, np.zeros((0, self.spec.ndim), dtype=_NATIVE.get(self.spec.dtype, np.float32))
            found = ids[np.atleast_1d(self._index.contains(ids))]
            return found, _get_rows(self._index, found, self.spec.dtype, self.spec.ndim)

    def scan(
        self, query: np.ndarray, ids: np.ndarray, rows: np.ndarray, count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `count` of gathered rows by a SIMD scan: (ids, distances), best first."""
        if len(ids) == 0 or count <= 0:
            return np.zeros(0, np.uint64), np.zeros(0, np.float32)
        native = _NATIVE.get(self.spec.dtype, np.float32)
        q_rows = (
            _quantize_query(query, self.spec.dtype)
            if rows.dtype == native
            else np.asarray(query, dtype=np.float32)  # rows came as float32 (usearch's slow path)
        )
        take = min(count, len(ids))
        matches = usearch_search(rows, q_rows, take, USEARCH_METRICS[self.spec.metric], exact=True, threads=1)
        order = np.asarray(matches.keys, dtype=np.int64)[:take]
        return ids[order], np.asarray(matches.distances, dtype=np.float32)[:take]

    def search(self, query: np.ndarray, count: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Nearest neighbours: (ids, distances), best first; HNSW, or a brute-force scan if `exact`."""
        with self._lock:
            if len(self._index) == 0 or count <= 0:
                return np.zeros(0, np.uint64), np.zeros(0, np.float32)
            if exact:  # SIMD scan of the stored vectors, no per-vector Python work
                matches = self._index.search(
                    np.asarray(query, dtype=np.float32), count, exact=True, threads=1
                )
                return np.asarray(matches.keys, dtype=np.uint64), np.asarray(
                    matches.distances, dtype=np.float32
                )
            # The beam must be at least as wide as the result list, or HNSW returns fewer; widened
            # for this query only, so one deep (filtered) search does not slow down the next ones.
            beam = self._index.expansion_search
            if beam < count:
                self._index.expansion_search = count
            try:
                matches = self._index.search(np.asarray(query, dtype=np.float32), count, threads=1)
            finally:
                self._index.expansion_search = beam
        return np.asarray(matches.keys, dtype=np.uint64), np.asarray(matches.distances, dtype=np.float32)

    def search_batch(
        self, queries: np.ndarray, count: int, beam: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Approximate neighbours of many queries at once (all cores): (keys, distances) of shape
        (n, count), best first, and how many of each row are real results. `beam` narrows (or
        widens) the HNSW search for these queries only; it is never below `count`."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.spec.ndim)
        n = len(queries)
        with self._lock:
            if len(self._index) == 0 or count <= 0 or n == 0:
                return np.zeros((n, 0), np.uint64), np.zeros((n, 0), np.float32), np.zeros(n, np.int64)
            default = self._index.expansion_search
            wanted = max(count, default if beam is None else beam)
            if wanted != default:
                self._index.expansion_search = wanted
            try:
                matches = self._index.search(queries, count, threads=0)
            finally:
                self._index.expansion_search = default
        if not hasattr(matches, "counts"):  # a single query comes back as plain Matches
            keys = np.asarray(matches.keys, dtype=np.uint64)
            distances = np.asarray(matches.distances, dtype=np.float32)
            padded_keys = np.zeros((1, count), np.uint64)
            padded_distances = np.zeros((1, count), np.float32)
            padded_keys[0, : len(keys)], padded_distances[0, : len(keys)] = keys, distances
            return padded_keys, padded_distances, np.array([len(keys)])
        return (
            np.asarray(matches.keys, dtype=np.uint64).reshape(n, -1),
            np.asarray(matches.distances, dtype=np.float32).reshape(n, -1),
            np.asarray(matches.counts, dtype=np.int64).reshape(n),
        )

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    def set_expansion_search(self, value: int) -> None:
        with self._lock:
            self._index.expansion_search = value

    @property
    def memory_usage(self) -> int:
        return int(self._index.memory_usage)


# usearch stores i8 components as round-toward-zero(x * 127) of unit vectors.
_I8_SCALE = 1.0 / 127.0
_NATIVE = {"f32": np.float32, "f16": np.float16, "i8": np.int8}


def _get_rows(index: Index, keys: np.ndarray, dtype: str, ndim: int) -> np.ndarray:
    """Stored vectors of present `keys` as one (n, ndim) matrix in their stored precision.

    `Index.get` wraps every vector in its own array and converts each one; fetching the raw
    rows and joining their bytes is ~5x faster (10k vectors: 6 ms instead of 32 ms), which is
    most of the cost of an exact filtered search. Falls back to float32 from `get`.
    """
    native = _NATIVE.get(dtype)
    compiled = getattr(index, "_compiled", None)
    if native is not None and compiled is not None and hasattr(compiled, "get_many"):
        try:
            rows = compiled.get_many(keys, index.dtype)
            return np.frombuffer(b"".join(rows), dtype=native).reshape(len(keys), ndim)
        except (TypeError, ValueError, AttributeError):  # a usearch whose internals moved on
            pass
    return np.asarray(index.get(keys, dtype=np.float32), dtype=np.float32).reshape(len(keys), ndim)


def _get_matrix(index: Index, keys: np.ndarray, dtype: str) -> np.ndarray:
    """Stored vectors of present `keys` as float32 (i8 dequantized)."""
    rows = _get_rows(index, keys, dtype, index.ndim)
    if dtype == "i8" and rows.dtype == np.int8:
        return rows.astype(np.float32) * np.float32(_I8_SCALE)
    return rows.astype(np.float32, copy=False)


def _quantize_query(query: np.ndarray, dtype: str) -> np.ndarray:
    """The query in the stored precision, scaled as usearch scales stored vectors."""
    q = np.asarray(query, dtype=np.float32).ravel()
    if dtype == "i8":
        return np.trunc(np.clip(q, -1.0, 1.0) / _I8_SCALE).astype(np.int8)
    return q.astype(_NATIVE.get(dtype, np.float32))


def exact_distances(metric: str, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Distances as USearch defines them, computed exactly (float32) over `vectors`.

    einsum, not `@`: a matrix-vector product goes to OpenBLAS, whose threads spin-wait for a
    busy core; on a loaded 2-core machine `v @ q` took 20 ms where einsum takes 0.2 ms.
    """
    q = np.asarray(query, dtype=np.float32).ravel()
    v = np.asarray(vectors, dtype=np.float32)
    if metric == "l2":
        diff = v - q
        return np.einsum("ij,ij->i", diff, diff)
    dots = np.einsum("ij,j->i", v, q)
    if metric == "ip":
        return 1.0 - dots
    norms = np.sqrt(np.einsum("ij,ij->i", v, v)) * (float(np.sqrt(q @ q)) or 1.0)
    return 1.0 - dots / np.where(norms == 0, 1.0, norms)


def similarity(metric: str, distances: np.ndarray) -> np.ndarray:
    """One 'higher is better' score for every metric.

    cosine and ip: the dot product of unit vectors (1 - distance). l2: USearch reports the
    squared distance d; for unit vectors 1 - d/2 equals the cosine, so scores stay comparable.
    """
    d = np.asarray(distances, dtype=np.float32)
    return 1.0 - d / 2.0 if metric == "l2" else 1.0 - d


def reported_distance(metric: str, distances: np.ndarray) -> np.ndarray:
    """The distance shown to users: Euclidean for l2 (USearch works with its square)."""
    d = np.asarray(distances, dtype=np.float32)
    return np.sqrt(np.maximum(d, 0.0)) if metric == "l2" else d


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def file_checksum(path: Path) -> str:
    """xxh3-128 of a file's bytes, read in chunks (GB/s: small next to loading the index)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _describe_save_error(path: Path, exc: BaseException) -> str:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    try:
        free = shutil.disk_usage(path.parent).free
        detail += f"; {free / 1e6:.0f} MB free on that disk"
    except OSError:
        pass
    return (
        f"cannot save the vector index {path} ({detail}): free some disk space or make the data folder "
        "writable. The catalog is intact; the index is rebuilt from it when needed"
    )


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (POSIX; Windows cannot open folders and needs no such step)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
