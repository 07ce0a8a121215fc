"""Remote k-NN search: the local planner's rule, run on the cluster.

Unfiltered, or when a filter leaves many documents: an approximate `knn` query (the filter
inside it, so the engine filters while it searches and still returns k hits). When a filter
narrows the set to at most `exact_search_max_candidates` (estimated with `_count`), or when
asked: exact scoring with a `script_score` query and the k-NN plugin's `knn_score` script.
Bodies follow the OpenSearch k-NN docs (2.x and 3.x); scores are converted back to the
library's own distance and similarity, so results look the same as local ones.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from visualfinder.catalog.filters import META_FIELDS, Filters, format_name
from visualfinder.catalog.store import Catalog, subtree_bounds
from visualfinder.errors import EmptyLibraryError, QueryError
from visualfinder.remote.documents import record_from_source
from visualfinder.remote.mapping import SPACE_TYPES, VECTOR_FIELD, RemoteSpec
from visualfinder.remote.opensearch import MAX_RESULT_WINDOW, RemoteCluster
from visualfinder.search.planner import Plan, SearchResult, choose_method
from visualfinder.search.vector_index import reported_distance, similarity

log = logging.getLogger(__name__)

# Fields whose exact value lives in a keyword sub-field (they are also analysed text).
_TEXT_FIELDS = {"title", "description"}


def filter_clauses(filters: Filters) -> list[dict]:
    """The local Filters as OpenSearch filter clauses (all must match), same meaning as Filters.to_sql."""
    clauses: list[dict] = []
    if filters.folders:
        # Strictly below the folder, like subtree_bounds: its lower bound is the folder plus a separator.
        prefixes = [{"prefix": {"path": subtree_bounds(folder)[0]}} for folder in filters.folders]
        clauses.append({"bool": {"should": prefixes, "minimum_should_match": 1}})
    if filters.tags_any:
        clauses.append({"terms": {"tags": [t.strip().lower() for t in filters.tags_any]}})
    for tag in filters.tags_all:
        clauses.append({"term": {"tags": tag.strip().lower()}})
    if filters.types:
        clauses.append({"terms": {"format": sorted({format_name(t) for t in filters.types})}})
    mtime: dict[str, int] = {}
    if filters.modified_after:
        mtime["gte"] = math.floor(filters.modified_after.timestamp() * 1000)
    if filters.modified_before:
        mtime["lt"] = math.ceil(filters.modified_before.timestamp() * 1000)
    if mtime:
        clauses.append({"range": {"mtime": mtime}})
    size: dict[str, int] = {}
    if filters.min_bytes is not None:
        size["gte"] = filters.min_bytes
    if filters.max_bytes is not None:
        size["lte"] = filters.max_bytes
    if size:
        clauses.append({"range": {"size": size}})
    if filters.folder_names:  # a folder of that name anywhere in the path, like Filters.to_sql
        names = [
            {"wildcard": {"path": {"value": "*/" + _escape_wildcard(name.strip().strip("/\\")) + "/*",
                                   "case_insensitive": True}}}
            for name in filters.folder_names
        ]  # fmt: skip
        clauses.append({"bool": {"should": names, "minimum_should_match": 1}})
    for cond in filters.fields:
        if cond.field not in META_FIELDS:
            raise QueryError(
                f"remote search cannot filter on the extra field {cond.field!r} (the cluster does not index "
                f"extra fields); search locally, or filter on {', '.join(META_FIELDS)}"
            )
        name = f"{cond.field}.raw" if cond.field in _TEXT_FIELDS else cond.field
        if cond.op in ("<", "<=", ">", ">="):
            if cond.field != "price":
                raise QueryError(f"remote search compares only price with {cond.op}; search locally")
            bound = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[cond.op]
            clauses.append({"range": {"price": {bound: _number(cond)}}})
        elif cond.field == "price":
            if cond.contains:
                raise QueryError("price cannot be matched with ~ (contains); use price=VALUE")
            clauses.append({"term": {"price": _number(cond)}})
        elif cond.contains:
            pattern = "*" + _escape_wildcard(cond.value) + "*"
            clauses.append({"wildcard": {name: {"value": pattern, "case_insensitive": True}}})
        else:  # equality ignores case, as locally (COLLATE NOCASE)
            clauses.append({"term": {name: {"value": cond.value, "case_insensitive": True}}})
    return clauses


def _number(cond) -> float:
    try:
        return float(cond.value)
    except ValueError:
        raise QueryError(f"{cond.field} {cond.op} {cond.value!r}: the value must be a number") from None


def knn_body(vector: np.ndarray, k: int, filters: list[dict]) -> dict:
    """Approximate k-NN (`knn` query); a filter goes inside it (efficient k-NN filtering)."""
    knn: dict = {"vector": _floats(vector), "k": k}
    if filters:
        knn["filter"] = {"bool": {"filter": filters}}
    return {"size": k, "query": {"knn": {VECTOR_FIELD: knn}}, "_source": {"excludes": [VECTOR_FIELD]}}


def script_score_body(vector: np.ndarray, k: int, filters: list[dict], space_type: str) -> dict:
    """Exact k-NN over the filtered documents: `script_score` with the k-NN plugin's `knn_score`."""
    inner = {"bool": {"filter": filters}} if filters else {"match_all": {}}
    script = {
        "source": "knn_score",
        "lang": "knn",
        "params": {"field": VECTOR_FIELD, "query_value": _floats(vector), "space_type": space_type},
    }
    return {
        "size": k,
        "query": {"script_score": {"query": inner, "script": script}},
        "_source": {"excludes": [VECTOR_FIELD]},
    }


def count_query(filters: list[dict]) -> dict | None:
    return {"bool": {"filter": filters}} if filters else None


def distance_from_score(metric: str, score: float, exact: bool) -> float:
    """The library's own (USearch) distance from an OpenSearch score.

    From the k-NN docs' space table: approximate cosinesimil scores (2 - (1 - cos)) / 2; the
    knn_score script scores 1 + cos; innerproduct scores 1 + ip when ip >= 0, else
    1 / (1 - ip); l2 scores 1 / (1 + d^2). USearch's distances: cos and ip 1 - x, l2 d^2.
    """
    if metric == "cosine":
        cos = score - 1.0 if exact else 2.0 * score - 1.0
        return 1.0 - cos
    if metric == "ip":
        ip = score - 1.0 if score >= 1.0 else 1.0 - 1.0 / max(score, 1e-12)
        return 1.0 - ip
    if metric == "l2":
        return max(0.0, 1.0 / max(score, 1e-12) - 1.0)
    raise QueryError(f"unknown metric {metric!r}")


class RemoteSearcher:
    """Answers k-NN queries on the remote index, choosing knn or script_score like the local planner."""

    def __init__(
        self, cluster: RemoteCluster, spec: RemoteSpec, exact_max: int, catalog: Catalog | None = None
    ):
        self.cluster = cluster
        self.spec = spec
        self.exact_max = exact_max
        self.catalog = catalog
        self._checked = False

    def search(
        self, query: np.ndarray, k: int, filters: Filters | None = None, exact: bool = False
    ) -> tuple[list[SearchResult], Plan]:
        if not self._checked:
            self.cluster.check_index(self.spec)
            self._checked = True
        filters = filters or Filters()
        clauses = filter_clauses(filters)
        total = self.cluster.count()
        if total == 0:
            raise EmptyLibraryError(
                f"the remote index {self.cluster.index!r} has no documents yet; run `visualfinder sync`"
            )
        candidates = self.cluster.count(count_query(clauses)) if clauses else None
        method = choose_method(total, candidates, k, exact, self.exact_max)
        size = min(k, MAX_RESULT_WINDOW)
        if size < k:
            log.warning("remote search returns at most %d results", MAX_RESULT_WINDOW)
        if method == "exact":
            body = script_score_body(query, size, clauses, SPACE_TYPES[self.spec.metric])
        else:
            body = knn_body(query, size, clauses)
        hits = self.cluster.search(body)["hits"]["hits"]
        plan = Plan(method, total if candidates is None else candidates, where="remote")
        log.debug("remote query answered by %s over %d candidates", plan.method, plan.candidates)
        return self._results(hits, exact=method == "exact"), plan

    def _results(self, hits: list[dict], exact: bool) -> list[SearchResult]:
        metric = self.spec.metric
        distances = np.array(
            [distance_from_score(metric, float(h["_score"]), exact) for h in hits], np.float32
        )
        scores = similarity(metric, distances)
        shown = reported_distance(metric, distances)
        # Our own documents show the local thumbnail; others come with paths and metadata only.
        own = self.catalog.library_id if self.catalog is not None else None
        local_ids = [int(h["_source"]["image_id"]) for h in hits if h["_source"].get("library_id") == own]
        local = self.catalog.records(local_ids) if own and local_ids else {}
        results = []
        for hit, score, dist in zip(hits, scores.tolist(), shown.tolist(), strict=True):
            source = hit["_source"]
            mine = local.get(int(source.get("image_id", 0))) if source.get("library_id") == own else None
            record = record_from_source(source, mine.thumb_path if mine else None)
            results.append(SearchResult(len(results) + 1, record.id, score, dist, record, doc_id=hit["_id"]))
        return results


def _floats(vector: np.ndarray) -> list[float]:
    return [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]


def _escape_wildcard(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
