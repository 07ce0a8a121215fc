"""The Library's OpenSearch features (visualfinder.remote): the connection, sync and remote search.

A part of `service.Library` (it inherits this class), like library_catalog. The remote package
(and opensearch-py) is imported only when one of these is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visualfinder.jobs import CancelToken, ProgressCallback, no_progress

if TYPE_CHECKING:
    from visualfinder.remote.mapping import RemoteSpec
    from visualfinder.remote.opensearch import RemoteCluster
    from visualfinder.remote.query import RemoteSearcher
    from visualfinder.remote.sync import Syncer, SyncReport, SyncStatus


class RemoteFeatures:
    """Mixed into service.Library."""

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
