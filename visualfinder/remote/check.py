"""Test a connection: the server's version, whether the k-NN plugin is installed, and whether
the remote index (if it exists) can hold this library's vectors. Changes nothing on the cluster.

`visualfinder sync --check` and the app's Settings › OpenSearch › Test connection show it.
"""

from __future__ import annotations

from dataclasses import dataclass

from visualfinder.errors import RemoteMismatchError
from visualfinder.remote.mapping import RemoteSpec, check_mapping
from visualfinder.remote.opensearch import RemoteCluster

KNN_PLUGIN = "opensearch-knn"


@dataclass(frozen=True)
class ConnectionCheck:
    urls: list[str]
    index: str
    cluster_name: str
    distribution: str  # "opensearch" (Elasticsearch answers too, and is not supported)
    version: str
    knn_plugin: bool | None  # None: the cluster does not list its plugins
    index_exists: bool
    mapping_ok: bool  # the index matches this library, or does not exist yet (the first sync creates it)
    mapping_message: str
    documents: int | None

    @property
    def ok(self) -> bool:
        return self.distribution == "opensearch" and self.knn_plugin is not False and self.mapping_ok

    def lines(self) -> list[str]:
        """What a person reads: one fact per line."""
        knn = {
            True: "installed",
            False: "NOT installed (vector search needs it)",
            None: "not listed by the cluster",
        }
        return [
            f"server:     {self.distribution} {self.version} ({self.cluster_name})",
            f"k-NN:       {knn[self.knn_plugin]}",
            f"index:      {self.index}: {self.mapping_message}",
        ]

    def to_json(self) -> dict:
        return {
            "urls": self.urls, "index": self.index, "cluster_name": self.cluster_name,
            "distribution": self.distribution, "version": self.version, "knn_plugin": self.knn_plugin,
            "index_exists": self.index_exists, "mapping_ok": self.mapping_ok,
            "mapping_message": self.mapping_message, "documents": self.documents, "ok": self.ok,
        }  # fmt: skip


def check_connection(cluster: RemoteCluster, spec: RemoteSpec) -> ConnectionCheck:
    """Ask the cluster who it is, which plugins it has, and compare the index with `spec`.

    Raises RemoteUnavailableError / RemoteAuthError / RemoteError when it cannot be asked at all."""
    info = cluster.info()
    version = info.get("version", {}) if isinstance(info, dict) else {}
    plugins = cluster.plugins()
    exists = cluster.index_exists()
    documents = None
    if not exists:
        ok, message = True, "does not exist yet; the first sync creates it"
    else:
        try:
            check = check_mapping(cluster.index, cluster.mapping(), spec)
            ok = True
            documents = cluster.count()
            message = f"matches this library ({spec.model_key}, {spec.dimension} dimensions, {spec.metric}); "
            message += f"{documents:,} documents"
            if check.missing_fields:
                message += f"; the next sync adds the fields {', '.join(sorted(check.missing_fields))}"
        except RemoteMismatchError as exc:
            ok, message = False, str(exc)
    return ConnectionCheck(
        urls=list(cluster.urls), index=cluster.index, cluster_name=str(info.get("cluster_name", "")),
        distribution=str(version.get("distribution", "elasticsearch")), version=str(version.get("number", "?")),
        knn_plugin=None if plugins is None else KNN_PLUGIN in plugins, index_exists=exists, mapping_ok=ok,
        mapping_message=message, documents=documents,
    )  # fmt: skip
