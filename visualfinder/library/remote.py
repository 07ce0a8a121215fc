"""Remote: a library's OpenSearch side (visualfinder.remote): the connection, sync and remote search.

The remote package (and opensearch-py) is imported only when one of these is used.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from visualfinder.catalog.outbox import Outbox, SyncState
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.jobs import CancelToken, ProgressCallback, no_progress
from visualfinder.library.live_index import LiveIndex

if TYPE_CHECKING:
    from visualfinder.remote.check import ConnectionCheck
    from visualfinder.remote.mapping import RemoteSpec
    from visualfinder.remote.opensearch import RemoteCluster
    from visualfinder.remote.query import RemoteSearcher
    from visualfinder.remote.sync import Syncer, SyncReport, SyncStatus


class ClusterConnection:
    """The connection to the configured cluster and a searcher over it, each made on first use
    and shared by every thread; a library's `Remote` and `RemoteOnly` (serve --remote) hold one."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._cluster: RemoteCluster | None = None
        self._searcher: RemoteSearcher | None = None

    def cluster(self) -> RemoteCluster:
        from visualfinder.remote.opensearch import connect

        with self._lock:
            if self._cluster is None:
                self._cluster = connect(self.settings)
            return self._cluster

    def searcher(self, spec: RemoteSpec, catalog: Catalog | None = None) -> RemoteSearcher:
        """The searcher for `spec`: a new one when the spec changed (a model or metric switch)."""
        from visualfinder.remote.query import RemoteSearcher

        cluster = self.cluster()
        with self._lock:
            if self._searcher is None or self._searcher.spec != spec:
                self._searcher = RemoteSearcher(
                    cluster, spec, self.settings.exact_search_max_candidates, catalog
                )
            return self._searcher

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None
            self._searcher = None


class Remote:
    """The OpenSearch cluster one library syncs to, and searches with `SearchRequest.remote`."""

    def __init__(self, settings: Settings, catalog: Catalog, live: LiveIndex):
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self._connection = ClusterConnection(settings)

    def cluster(self) -> RemoteCluster:
        """The connection to the configured OpenSearch cluster (made once, on first use)."""
        return self._connection.cluster()

    def spec(self, settings: Settings | None = None) -> RemoteSpec:
        """What the remote index must hold: this library's model, dimension and metric (under
        `settings`' index name and options; by default the library's own)."""
        from visualfinder.remote.sync import remote_spec

        engine = self.live.engine
        return remote_spec(settings or self.settings, engine.embedder.dim, engine.metric, engine.model.key)

    def check(self, settings: Settings | None = None, password: str | None = None) -> ConnectionCheck:
        """Test the connection: server version, k-NN plugin, and whether the index fits this library.

        `settings` (and `password`) test a configuration before it is saved (the app's settings
        page); without them, the library's own connection is tested."""
        from visualfinder.remote.check import check_connection
        from visualfinder.remote.opensearch import connect

        if settings is None and password is None:
            return check_connection(self.cluster(), self.spec())
        settings = settings or self.settings
        cluster = connect(settings, password=password)
        try:
            return check_connection(cluster, self.spec(settings))
        finally:
            cluster.close()

    def searcher(self) -> RemoteSearcher:
        return self._connection.searcher(self.spec(), self.catalog)

    def syncer(self, cluster: RemoteCluster | None = None) -> Syncer:
        """A Syncer for this library (its own, for a background thread; see remote.worker)."""
        from visualfinder.remote.sync import Syncer

        return Syncer(self.catalog, cluster or self.cluster(), self.spec(), self.settings)

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

    def pending(self) -> int:
        """Changes recorded for the cluster and not yet acknowledged by it."""
        return Outbox(self.catalog).pending()

    def retry_rejected(self) -> int:
        """Queue the changes the cluster rejected again; returns how many."""
        return Outbox(self.catalog).retry_rejected()

    def disable(self) -> int:
        """Stop recording changes for the cluster; returns how many queued changes were dropped."""
        return self.catalog.enable_outbox(False)

    def status(self, rejected_limit: int | None = 20) -> SyncStatus:
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

    def close(self) -> None:
        self._connection.close()
