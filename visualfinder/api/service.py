"""ApiService: what the endpoints call, over a Library (local) or RemoteOnly (`serve --remote`).

Searches have their texts and images embedded through the model gate (batched, on one thread),
then run on FastAPI's worker threads like everything else, straight to the facade. Paths are
hidden here when `api_expose_paths` is off.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import Sequence

from visualfinder import __version__
from visualfinder.api.errors import ApiError
from visualfinder.api.gate import ModelGate
from visualfinder.api.jobs import IndexJobs
from visualfinder.catalog.records import META_FIELDS, ImageRecord
from visualfinder.config import Settings
from visualfinder.ingest.fetch import fetch_image
from visualfinder.ingest.imaging import DecodedImage
from visualfinder.library.facade import Library
from visualfinder.library.stateless import RemoteOnly
from visualfinder.products.export import write_rows
from visualfinder.search.planner import SearchResult
from visualfinder.search.query_bar import ParsedQuery, parse_query
from visualfinder.search.request import QueryTerm, SearchRequest, SearchResponse

API_PREFIX = "/api/v1"
# Redirects an image_url may take (each hop's address is checked again).
MAX_URL_REDIRECTS = 3


class ApiService:
    def __init__(self, settings: Settings, library: Library | None = None, remote: RemoteOnly | None = None):
        if (library is None) == (remote is None):
            raise ValueError("an ApiService serves either a Library or a RemoteOnly")
        self.settings = settings
        self.library = library
        self.remote = remote
        self.expose_paths = settings.api_expose_paths
        self.gate = ModelGate(self.embed_batch, settings.api_queue_size, settings.api_queue_timeout_s)
        self.jobs = IndexJobs(library, self.expose_paths) if library is not None else None
        self.started = time.time()

    @property
    def remote_only(self) -> bool:
        return self.remote is not None

    @property
    def _searcher(self) -> Library | RemoteOnly:
        return self.library if self.library is not None else self.remote

    def require_library(self) -> Library:
        if self.library is None:
            raise ApiError(404, "no_catalog", "this server searches OpenSearch alone (serve --remote) "
                                              "and holds no catalog: images, folders and jobs are not here")  # fmt: skip
        return self.library

    # --- queries -------------------------------------------------------------------------

    def parse_query(self, text: str) -> ParsedQuery:
        if self.library is not None:
            return self.library.parse_query(text)
        return parse_query(text, set(META_FIELDS))

    def decode_query_bytes(self, data: bytes, name: str) -> DecodedImage:
        """An upload, decoded by its bytes (never its name or header) with the indexing limits."""
        searcher = self._searcher
        return searcher.queries.decode_image_bytes(data, name, searcher.embedder)

    def fetch_query_image(self, url: str) -> DecodedImage:
        s = self.settings
        data = fetch_image(url, max_bytes=s.url_max_bytes, timeout=s.url_timeout_s,
                           allow_private=s.api_allow_private_urls, max_redirects=MAX_URL_REDIRECTS)  # fmt: skip
        return self.decode_query_bytes(data, url)

    def embed_batch(self, requests: Sequence[SearchRequest]) -> list[SearchRequest | Exception]:
        """The searches waiting for the model, on the gate's thread: every text and uploaded
        image among them turned into a vector, the texts in one call and the images in another
        (each alone when a batched call fails, so a bad input fails its own search only). The
        searches themselves (`search`) then run on the request threads, off the model's."""
        embedder = self._searcher.embedder
        texts = [t for r in requests for t in r.terms if t.kind == "text" and str(t.value).strip()]
        images = [t for r in requests for t in r.terms if t.kind == "pil"]
        vectors: dict[int, object] = {}
        failed: dict[int, Exception] = {}
        for terms, embed in (
            (texts, lambda ts: embedder.embed_texts([str(t.value).strip() for t in ts])),
            (images, lambda ts: embedder.embed_images([t.value for t in ts])),
        ):
            if not terms:
                continue
            try:
                vectors.update(zip(map(id, terms), embed(terms), strict=True))
            except Exception:  # noqa: BLE001 - one bad input must not fail the others: each goes alone
                for term in terms:
                    try:
                        vectors[id(term)] = embed([term])[0]
                    except Exception as exc:  # noqa: BLE001 - handed to that request's caller
                        failed[id(term)] = exc
        answers: list[SearchRequest | Exception] = []
        for request in requests:
            error = next((failed[id(t)] for t in request.terms if id(t) in failed), None)
            if error is not None:
                answers.append(error)
                continue
            terms = [
                QueryTerm("vector", vectors[id(t)], t.weight) if id(t) in vectors else t
                for t in request.terms
            ]
            answers.append(dataclasses.replace(request, terms=terms))
        return answers

    def search(self, request: SearchRequest) -> SearchResponse:
        """A search whose texts and images are vectors already (`embed_batch`), by the facade."""
        return self._searcher.search(request)

    # --- answers -------------------------------------------------------------------------

    def shown_path(self, path: str) -> str:
        return path if self.expose_paths else os.path.basename(path)

    def result_json(self, result: SearchResult) -> dict:
        data = result.to_json()
        data["path"] = self.shown_path(data["path"])
        has_thumb = bool(result.record.thumb_path) and not self.remote_only and not result.doc_id
        data["thumbnail_url"] = f"{API_PREFIX}/images/{result.id}/thumbnail" if has_thumb else None
        data.pop("thumbnail", None)
        return data

    def search_json(self, response: SearchResponse, results: Sequence[SearchResult]) -> dict:
        plan = response.plan
        return {
            "results": [self.result_json(r) for r in results], "took_ms": round(response.seconds * 1000, 3),
            "plan": "remote" if plan.where == "remote" else plan.method, "method": plan.method,
            "candidates": plan.candidates,
        }  # fmt: skip

    def results_csv(self, results: Sequence[SearchResult]) -> str:
        """The results through the one CSV exporter (paths hidden as in JSON)."""
        if not self.expose_paths:
            results = [dataclasses.replace(r, record=self._hidden(r.record)) for r in results]
        out = io.StringIO()
        write_rows(out, results)
        return out.getvalue()

    def _hidden(self, record: ImageRecord) -> ImageRecord:
        return dataclasses.replace(record, path=self.shown_path(record.path), thumb_path=None)

    def record_json(self, record: ImageRecord) -> dict:
        return {
            "id": record.id, "path": self.shown_path(record.path), "file_name": record.file_name,
            "size": record.size, "modified_ns": record.mtime_ns, "width": record.width, "height": record.height,
            "format": record.format, "sku": record.sku, "title": record.title, "description": record.description,
            "url": record.url, "price": record.price, "tags": list(record.tags), "extra": dict(record.extra),
            "thumbnail_url": f"{API_PREFIX}/images/{record.id}/thumbnail" if record.thumb_path else None,
        }  # fmt: skip

    def status_json(self) -> dict:
        if self.remote is not None:
            return self._remote_status()
        library = self.library
        status = library.status(error_limit=0)
        s = status.stats
        folders = [
            {"path": self.shown_path(f.folder.path), "watched": f.folder.watched, "images": f.ok,
             "skipped": f.errors, "exists": f.exists}
            for f in status.folders
        ] if self.expose_paths else []  # fmt: skip
        remote = None
        if self.settings.sync_configured:
            sync = library.remote.status(rejected_limit=0)
            remote = {"index": sync.index, "enabled": sync.enabled, "pending": sync.pending,
                      "rejected": sync.rejected_count, "last_success": sync.last_success,
                      "last_error": sync.last_error}  # fmt: skip
            if self.expose_paths:
                remote["urls"] = sync.urls
        return {
            "images": s.ok, "skipped": s.errors, "model": status.model_key, "metric": status.metric,
            "index": {"count": status.index_count, "generation": status.index_generation,
                      "catalog_generation": status.catalog_generation, "health": status.index_health,
                      "dtype": status.index_dtype, "needs_embedding": s.needs_embedding},
            "folders": folders, "remote": remote, **self._server_json(),
        }  # fmt: skip

    def _remote_status(self) -> dict:
        remote = self.remote
        s = self.settings
        info: dict = {"index": s.remote_index, "reachable": True, "error": None}
        if self.expose_paths:
            info["urls"] = s.remote_urls
        try:
            count = remote.count()
        except Exception as exc:  # status must answer while the cluster is down
            count, info["reachable"], info["error"] = 0, False, str(exc)
        return {
            "images": count, "skipped": 0, "model": remote.model_key, "metric": remote.metric,
            "index": {"count": count, "where": "remote"}, "folders": [], "remote": info, **self._server_json(),
        }  # fmt: skip

    def _server_json(self) -> dict:
        return {"server": {"version": __version__, "mode": "remote" if self.remote_only else "local",
                           "queued": self.gate.in_system, "uptime_s": round(time.time() - self.started, 1)}}  # fmt: skip

    def close(self) -> None:
        """Finish the model's queue and the indexing jobs; the owner closes the library."""
        self.gate.close()
        if self.jobs is not None:
            self.jobs.close()
