"""The search planner: query vectors, filters, and the choice between exact and HNSW search.

The rule: approximate k-NN over large unfiltered sets; exact k-NN when a filter leaves a
small candidate set (or when asked, or when k covers the whole library).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from visualfinder.catalog.filters import Filters
from visualfinder.catalog.store import Catalog, ImageRecord
from visualfinder.errors import QueryError
from visualfinder.search.vector_index import VectorIndex, exact_distances, reported_distance, similarity

log = logging.getLogger(__name__)

# A quantized (i8) index ranks candidates approximately; this many are re-scored exactly
# (max(RESCORE_FACTOR * k, k + RESCORE_EXTRA)). At 1M and expansion 128, recall@10 was 0.846
# without re-scoring, 0.980 re-scoring 2k and 0.985 re-scoring 4k (tests/benchmarks/test_search_scale.py).
RESCORE_FACTOR = 4
RESCORE_EXTRA = 30


@dataclass
class SearchResult:
    """One hit: the image, how close it is, and the product it shows."""

    rank: int
    id: int
    score: float
    distance: float
    record: ImageRecord
    # Remote results only: the OpenSearch document id (`<library id>-<image id>`), since a
    # shared cluster holds several libraries whose image ids overlap.
    doc_id: str | None = None

    @property
    def path(self) -> str:
        return self.record.path

    @property
    def title(self) -> str | None:
        return self.record.title

    @property
    def label(self) -> str:
        return self.record.title or self.record.file_name

    @property
    def ranked(self) -> bool:
        """False for a filter-only query, whose results have no score (NaN)."""
        return not math.isnan(self.score)

    def to_json(self) -> dict:
        r = self.record
        return {
            "rank": self.rank, "id": self.id, "path": r.path, "score": _rounded(self.score),
            "distance": _rounded(self.distance), "title": r.title, "tags": list(r.tags),
            "description": r.description, "sku": r.sku, "url": r.url, "price": r.price,
            "extra": dict(r.extra), "width": r.width, "height": r.height, "thumbnail": r.thumb_path,
        } | ({"doc_id": self.doc_id} if self.doc_id else {})  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """How a query was answered (shown with --verbose, asserted by tests)."""

    method: str  # "exact", "hnsw", or "filter" (no query vector: filter matches, newest first)
    # Images the filter allowed (or the whole index). On the filtered HNSW path SQLite stops
    # counting past the exact-search limit, so there it is a lower bound: exact_max + 1.
    candidates: int
    where: str = "local"  # "local", or "remote" (the OpenSearch cluster)


def choose_method(total: int, candidates: int | None, k: int, exact: bool, exact_max: int) -> str:
    """The planner's rule, shared by local and remote search: "exact" or "hnsw".

    `candidates` is what a filter leaves (None: no filter). Exact when asked, when a filter
    narrows to at most `exact_max`, or when an unfiltered set is small or k covers it.
    """
    if exact:
        return "exact"
    if candidates is None:
        return "exact" if k >= total or total <= exact_max // 8 else "hnsw"
    return "exact" if candidates <= exact_max else "hnsw"


def combine(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Sum of unit vectors weighted +1 (more like this) or -1 (less like this), normalised.

    The one place where query vectors are combined: several images, image + text, minus terms.
    """
    if not vectors:
        raise QueryError("nothing to search for: give an image, a text or an indexed image")
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float32).ravel())
    for vector, weight in zip(vectors, weights, strict=True):
        v = np.asarray(vector, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(v))
        if norm > 0:
            total += weight * v / norm
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the query terms cancel each other out; remove a minus term")
    return total / norm


class SearchPlanner:
    """Answers k-NN queries over one library's index, honouring filters.

    The rule (`choose_method`; thresholds measured by tests/benchmarks/test_search_scale.py):
    no filter: HNSW, or an exact scan when the library is small, when asked, or when k covers
    it; a filter: SQLite counts its matches, up to `exact_max` they are searched exactly (a SIMD
    scan of just their vectors), beyond that HNSW over-fetches and SQLite checks the hits.
    With a quantized (i8) index the top candidates are re-scored from the catalog's float16
    vectors, so scores and order are those of the stored embeddings.
    """

    def __init__(self, catalog: Catalog, index: VectorIndex, metric: str, model_key: str, exact_max: int):
        self.catalog = catalog
        self.index = index
        self.metric = metric
        self.model_key = model_key
        self.exact_max = exact_max
        # The last filtered candidate set with its rows gathered from the index: a user who
        # narrows the search to a folder and tries query after query lists them only once.
        self._candidates: tuple[tuple, np.ndarray, np.ndarray] | None = None

    def search(
        self, query: np.ndarray, k: int, filters: Filters | None = None, exact: bool = False
    ) -> tuple[list[SearchResult], Plan]:
        filters = filters or Filters()
        total = len(self.index)
        if total == 0 or k <= 0:
            return [], Plan("exact", 0)
        if filters.is_empty():
            if choose_method(total, None, k, exact, self.exact_max) == "exact":
                ids, dist = self._finish(query, *self.index.search(query, self._fetch(k), exact=True), k)
                plan = Plan("exact", total)
            else:
                ids, dist = self._finish(query, *self.index.search(query, self._fetch(k)), k)
                plan = Plan("hnsw", total)
        else:
            where, params = filters.to_sql()
            # SQLite counts the candidates first, stopping past the exact-search limit; only a
            # small set is materialised for exact search, a large one is checked hit by hit.
            # Images are counted and listed without checking each one for a vector (the index
            # skips ids it does not hold): a folder filter is then answered from the path index
            # alone, 10k candidates in ~1 ms instead of ~25 ms of per-row vector lookups at 1M.
            # (Images that failed to decode count too; they are rare, and only the count shows it.)
            count = self.catalog.count_where(where, params, limit=None if exact else self.exact_max + 1)
            if self.exact_max < count <= k:  # k may exceed the capped count: is it reachable?
                count = self.catalog.count_where(where, params, model_key=self.model_key)
            if count == 0:
                plan = Plan("exact", 0)
                ids, dist = np.zeros(0, np.uint64), np.zeros(0, np.float32)
            elif choose_method(total, count, k, exact, self.exact_max) == "exact":
                if count <= self.exact_max:
                    found, rows = self._gathered_candidates(filters, where, params)
                    ids, dist = self._finish(query, *self.index.scan(query, found, rows, self._fetch(k)), k)
                else:  # forced (--exact) over a large set: scanned in chunks, nothing kept
                    ids, dist = self._exact(query, self.catalog.select_ids(where, params), k)
                plan = Plan("exact", count)
            else:
                ids, dist = self._filtered_hnsw(query, k, where, params, count, total)
                plan = Plan("hnsw", count)
        log.debug("query answered by %s over %d candidates", plan.method, plan.candidates)
        return self._results(ids, dist), plan

    def browse(self, k: int, filters: Filters) -> tuple[list[SearchResult], Plan]:
        """Images matching `filters` alone (a query bar with filters and no text), newest first."""
        where, params = filters.to_sql()
        count = self.catalog.count_where(f"i.status = 'ok' AND {where}", params)
        ids = self.catalog.browse_ids(where, params, k)
        nan = np.full(len(ids), np.nan, dtype=np.float32)
        return self._results(ids, nan), Plan("filter", count)

    # --- exact and approximate paths -----------------------------------------------------

    def _fetch(self, k: int) -> int:
        """How many candidates to take from the index for k results (more when re-scoring)."""
        return max(RESCORE_FACTOR * k, k + RESCORE_EXTRA) if self.index.quantized else k

    def _finish(
        self, query: np.ndarray, ids: np.ndarray, dist: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best k of candidates ordered by the index: re-scored first when the index is coarse."""
        if self.index.quantized and len(ids):
            ids, dist = self._rescore(query, ids[: self._fetch(k)])
        return ids[:k], dist[:k]

    def _rescore(self, query: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances from the catalog's float16 vectors (the source of truth), best first."""
        found_ids, found_dist = [], []
        for chunk_ids, vectors in self.catalog.iter_embeddings(self.model_key, ids=ids.tolist()):
            found_ids.append(chunk_ids)
            found_dist.append(exact_distances(self.metric, query, vectors))
        if not found_ids:
            return np.zeros(0, np.uint64), np.zeros(0, np.float32)
        all_ids, all_dist = np.concatenate(found_ids), np.concatenate(found_dist).astype(np.float32)
        order = np.lexsort((all_ids, all_dist))
        return all_ids[order], all_dist[order]

    def _gathered_candidates(
        self, filters: Filters, where: str, params: list[object]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The filter's candidates present in the index, with their rows; reused while nothing
        they depend on changed. Only filters on the files themselves (folder, name, type, date,
        size) are kept: those change only with the catalog's generation, which an index
        update follows; tags and metadata change without it."""
        key = None
        if filters.on_files_only():
            key = (where, tuple(params), self.catalog.generation, self.index.generation, len(self.index))
            cached = self._candidates
            if cached is not None and cached[0] == key:
                return cached[1], cached[2]
        found, rows = self.index.gather(self.catalog.select_ids(where, params))
        if key is not None:
            self._candidates = (key, found, rows)  # one tuple: readers on other threads see old or new
        return found, rows

    def _exact(self, query: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over `ids`: a SIMD scan of their stored vectors (re-scored if coarse)."""
        return self._finish(query, *self.index.exact_search(query, ids, self._fetch(k)), k)

    def _filtered_hnsw(
        self, query: np.ndarray, k: int, where: str, params: list[object], matches: int, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW with over-fetch: widen the search until k hits pass the filter (SQLite checks
        each round's hits); if the graph cannot deliver them, search the candidates exactly.

        `matches` is at least exact_max + 1 here, so at least k hits exist whenever k is below it.
        """
        fetch = self._fetch(k)
        want = min(fetch, matches)
        # `matches` is capped (counting stopped past exact_max), so the selectivity it implies
        # is a floor: start at most 32 x fetch deep and widen, rather than pay for the floor.
        # At 1M with a 10 % folder: 12 ms instead of 56 ms; a 2 % one takes one more round.
        count = min(total, max(4 * fetch, min(int(2 * fetch * total / max(matches, 1)), 32 * fetch)))
        while True:
            ids, dist = self.index.search(query, count)
            allowed = self.catalog.select_ids(where, params, within=ids.tolist())  # hits have vectors
            keep = _isin_sorted(ids, allowed)
            if keep.sum() >= want:
                return self._finish(query, ids[keep], dist[keep], k)
            if count >= total or count >= 16 * self.exact_max:
                break
            count = min(total, count * 4)
        log.debug("filtered HNSW found %d of %d; searching the candidates exactly", keep.sum(), want)
        return self._exact(query, self.catalog.select_ids(where, params), k)

    def _results(self, ids: np.ndarray, distances: np.ndarray) -> list[SearchResult]:
        records = self.catalog.records(ids.tolist())
        scores = similarity(self.metric, distances)
        shown = reported_distance(self.metric, distances)
        results = []
        for image_id, score, dist in zip(ids.tolist(), scores.tolist(), shown.tolist(), strict=True):
            record = records.get(image_id)
            if record is None:  # removed from the catalog after the index answered
                continue
            results.append(SearchResult(len(results) + 1, image_id, score, dist, record))
        return results


def _isin_sorted(values: np.ndarray, sorted_allowed: np.ndarray) -> np.ndarray:
    if len(sorted_allowed) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_allowed, values)
    pos = np.minimum(pos, len(sorted_allowed) - 1)
    return sorted_allowed[pos] == values


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
