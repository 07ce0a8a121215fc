"""RemoteOnly: search the OpenSearch index with no local catalog (`visualfinder serve --remote`).

The photo is embedded here by the settings' model and the k-NN search runs on the cluster,
through the same QueryEncoder and RemoteSearcher that `search --remote` uses. It holds no
catalog, no index and no lock, so several instances behind a load balancer scale out on the
cluster.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from visualfinder.config import Settings
from visualfinder.errors import QueryError, SettingsError
from visualfinder.library.queries import QueryEncoder
from visualfinder.library.remote import ClusterConnection
from visualfinder.models.embedder import Embedder
from visualfinder.search.request import SearchRequest, SearchResponse

if TYPE_CHECKING:
    from visualfinder.remote.opensearch import RemoteCluster
    from visualfinder.remote.query import RemoteSearcher


class RemoteOnly:
    """The searching half of a Library, answered by the cluster alone."""

    def __init__(self, settings: Settings, embedder: Embedder):
        if not settings.sync_configured:
            raise SettingsError(
                "searching OpenSearch alone needs its address: set remote_url "
                "(visualfinder sync --url https://HOST:9200)"
            )
        self.settings = settings
        self.embedder = embedder
        self.queries = QueryEncoder(settings, None)
        self._connection = ClusterConnection(settings)

    @property
    def metric(self) -> str:
        return self.settings.metric

    @property
    def model_key(self) -> str:
        return self.embedder.key

    def cluster(self) -> RemoteCluster:
        return self._connection.cluster()

    def searcher(self) -> RemoteSearcher:
        from visualfinder.remote.sync import remote_spec

        return self._connection.searcher(
            remote_spec(self.settings, self.embedder.dim, self.metric, self.model_key)
        )

    def search(self, request: SearchRequest) -> SearchResponse:
        """Embed the query terms here, search the cluster (knn, or exact script_score when narrow)."""
        started = time.perf_counter()
        if request.k < 1:
            raise QueryError("k must be at least 1")
        if not request.terms:
            raise QueryError("nothing to search for: give an image or a text")
        query = self.queries.query_vector(request.terms, self.embedder, self.model_key)
        results, plan = self.searcher().search(query, request.k, request.filters, request.exact)
        return SearchResponse(results, plan, time.perf_counter() - started)

    def count(self) -> int:
        return self.cluster().count()

    def close(self) -> None:
        self._connection.close()


def open_remote_only(settings: Settings) -> RemoteOnly:
    """The settings' model, loaded now (warm for the first query), over the configured cluster."""
    embedder = Embedder.for_settings(settings, settings.model, settings.pretrained)
    embedder.load()
    return RemoteOnly(settings, embedder)
