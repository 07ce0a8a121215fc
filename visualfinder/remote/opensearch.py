"""The OpenSearch cluster, through opensearch-py: connection, the index, _bulk with retries, queries.

Every request goes through `RemoteCluster._call`, which retries 429, 5xx and timeouts with
exponential backoff and jitter (opensearch-py's own retries are off, so backoff and
cancellation are ours) and turns failures into typed errors with one-line messages.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from visualfinder.config import Settings
from visualfinder.errors import (
    Cancelled,
    RemoteAuthError,
    RemoteError,
    RemoteUnavailableError,
    SettingsError,
)
from visualfinder.jobs import CancelToken
from visualfinder.remote import credentials
from visualfinder.remote.mapping import RemoteSpec, check_mapping, index_body

log = logging.getLogger(__name__)

T = TypeVar("T")

# Per-item _bulk statuses worth sending again; anything else 4xx is a rejection of the document.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RESULT_WINDOW = 10_000  # OpenSearch's default index.max_result_window and knn k limit


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": half the step fixed, half random."""

    max_retries: int = 6
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        step = min(self.max_s, self.base_s * (2**attempt))
        return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True)
class BulkItem:
    """One action of a _bulk body: its NDJSON lines (action, and source for index)."""

    key: object  # the caller's handle (the outbox entry)
    lines: bytes
    op: str  # "index" or "delete"


@dataclass(frozen=True)
class ItemOutcome:
    key: object
    ok: bool
    error: str | None = None
    # True: the cluster refused the document itself (mapping, bad value): sending it again is useless.
    rejected: bool = False


@dataclass(frozen=True)
class RemoteIndexInfo:
    name: str
    uuid: str  # changes when the index is deleted and created again: the sign to re-push everything
    created: bool
    engine: str | None


class RemoteCluster:
    """One connection to a cluster and one index on it."""

    def __init__(self, client: Any, urls: list[str], index: str, retry: RetryPolicy, engine: str = "auto"):
        self.client = client
        self.urls = urls
        self.index = index
        self.retry = retry
        self.engine_setting = engine

    @property
    def where(self) -> str:
        return f"{', '.join(self.urls)} (index {self.index})"

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover - closing is best effort
            pass

    # --- requests with retries ------------------------------------------------------------

    def _call(self, what: str, request: Callable[[], T], cancel: CancelToken | None = None) -> T:
        from opensearchpy.exceptions import ConnectionError as OSConnectionError
        from opensearchpy.exceptions import SSLError, TransportError

        last = ""
        for attempt in range(self.retry.max_retries + 1):
            try:
                return request()
            except SSLError as exc:
                raise RemoteError(
                    f"TLS error talking to {', '.join(self.urls)}: {_reason(exc)}; if the cluster uses a private "
                    "CA, give its certificate with --ca-bundle FILE"
                ) from exc
            except OSConnectionError as exc:
                last = _reason(exc)
            except TransportError as exc:
                status = exc.status_code
                if status in (401, 403):
                    raise RemoteAuthError(
                        f"OpenSearch at {', '.join(self.urls)} refused the credentials ({status}: {_reason(exc)}); "
                        "check --user and store the password with `visualfinder sync --ask-password`"
                    ) from exc
                if not (isinstance(status, int) and status in RETRYABLE_STATUS):
                    raise RemoteError(f"OpenSearch refused to {what}: {status} {_reason(exc)}") from exc
                last = f"{status} {_reason(exc)}"
            if attempt == self.retry.max_retries:
                break
            pause = self.retry.delay(attempt)
            log.info(
                "%s failed (%s); retry %d/%d in %.2fs", what, last, attempt + 1, self.retry.max_retries, pause
            )
            _sleep(pause, cancel)
        raise RemoteUnavailableError(f"cannot reach OpenSearch at {', '.join(self.urls)}: {last}")

    # --- the index ------------------------------------------------------------------------

    def ensure_index(
        self, spec: RemoteSpec, recreate: bool = False, cancel: CancelToken | None = None
    ) -> RemoteIndexInfo:
        """Create the index if missing (or on `recreate`), else check that it matches `spec`."""
        indices = self.client.indices
        exists = self._call("check the index", lambda: indices.exists(index=self.index), cancel)
        if exists and recreate:
            log.warning("deleting the remote index %s to recreate it", self.index)
            self._call("delete the index", lambda: indices.delete(index=self.index), cancel)
            exists = False
        created = False
        if not exists:
            engine = self.choose_engine(spec.metric, cancel)
            body = index_body(RemoteSpec(spec.dimension, spec.metric, spec.model_key, engine, spec.m,
                                         spec.ef_construction))  # fmt: skip
            try:
                self._call("create the index", lambda: indices.create(index=self.index, body=body), cancel)
                created = True
                log.info("created the remote index %s (%s, %s)", self.index, engine, spec.space_type)
            except RemoteError as exc:
                if "resource_already_exists" not in str(exc.__cause__ or exc):
                    raise
                # Another process created it between our check and create: check it like any other.
        engine = None
        if not created:
            mapping = self._mapping(cancel)
            check = check_mapping(self.index, mapping, spec)
            engine = check.engine
            if check.missing_fields:
                log.info("adding fields %s to the remote index mapping", ", ".join(check.missing_fields))
                self._call("update the mapping", lambda: indices.put_mapping(
                    index=self.index, body={"properties": check.missing_fields}), cancel)  # fmt: skip
        return RemoteIndexInfo(self.index, self._uuid(cancel), created, engine)

    def check_index(self, spec: RemoteSpec) -> None:
        """For queries: the index must exist and match; nothing is created or changed."""
        exists = self._call("check the index", lambda: self.client.indices.exists(index=self.index))
        if not exists:
            raise RemoteError(
                f"there is no index {self.index!r} on {', '.join(self.urls)} yet: run `visualfinder sync` first"
            )
        check_mapping(self.index, self._mapping(), spec)

    def _mapping(self, cancel: CancelToken | None = None) -> dict:
        raw = self._call(
            "read the mapping", lambda: self.client.indices.get_mapping(index=self.index), cancel
        )
        # Keyed by the concrete index name, which differs from ours when `index` is an alias.
        return next(iter(raw.values()), {}).get("mappings", {})

    def _uuid(self, cancel: CancelToken | None = None) -> str:
        try:
            raw = self._call(
                "read the index settings", lambda: self.client.indices.get_settings(index=self.index), cancel
            )
            return str(next(iter(raw.values()))["settings"]["index"].get("uuid", ""))
        except (RemoteUnavailableError, RemoteAuthError):
            raise
        except (RemoteError, KeyError, StopIteration):  # e.g. OpenSearch Serverless hides index settings
            return ""

    def choose_engine(self, metric: str, cancel: CancelToken | None = None) -> str:
        """The configured engine; for "auto", faiss unless the cluster's faiss lacks the metric."""
        if self.engine_setting != "auto":
            return self.engine_setting
        version = self.version(cancel)
        # faiss supports cosinesimil from OpenSearch 2.19; lucene has it since 2.x.
        if metric == "cosine" and version is not None and version < (2, 19):
            return "lucene"
        return "faiss"

    def version(self, cancel: CancelToken | None = None) -> tuple[int, int] | None:
        try:
            number = self._call("read the cluster version", self.client.info, cancel)["version"]["number"]
            major, minor = (int(part) for part in number.split(".")[:2])
            return major, minor
        except (RemoteError, KeyError, ValueError, TypeError):
            return None

    def info(self, cancel: CancelToken | None = None) -> dict:
        """GET /: the cluster's name and version (raises when it cannot be reached or refuses us)."""
        return self._call("read the cluster version", self.client.info, cancel)

    def plugins(self) -> set[str] | None:
        """The plugins installed on the cluster's nodes; None when the cluster does not say
        (OpenSearch Serverless and some managed services hide _cat/plugins)."""
        try:
            rows = self._call("list the plugins", lambda: self.client.cat.plugins(format="json"))
        except (RemoteUnavailableError, RemoteAuthError):
            raise
        except RemoteError:
            return None
        if not isinstance(rows, list):
            return None
        return {str(row.get("component", "")) for row in rows if isinstance(row, dict)}

    def index_exists(self) -> bool:
        return bool(self._call("check the index", lambda: self.client.indices.exists(index=self.index)))

    def mapping(self) -> dict:
        """The index's mapping (of the concrete index when `index` is an alias)."""
        return self._mapping()

    def delete_index(self) -> None:
        self._call(
            "delete the index", lambda: self.client.indices.delete(index=self.index, ignore_unavailable=True)
        )

    def refresh(self) -> None:
        self._call("refresh the index", lambda: self.client.indices.refresh(index=self.index))

    # --- documents ------------------------------------------------------------------------

    def bulk(self, items: list[BulkItem], cancel: CancelToken | None = None) -> list[ItemOutcome]:
        """Send items as one _bulk request; items refused with 429/5xx are sent again with backoff.

        Returns one outcome per item. Items still failing after the retries come back
        with ok=False, rejected=False (the caller keeps them for the next sync).
        """
        outcomes: dict[int, ItemOutcome] = {}
        todo = list(range(len(items)))
        for attempt in range(self.retry.max_retries + 1):
            body = b"".join(items[i].lines for i in todo)
            response = self._call("send documents", lambda body=body: self.client.bulk(body=body), cancel)
            again = []
            for i, result in zip(todo, response.get("items", []), strict=False):
                outcome = _item_outcome(items[i], result)
                if outcome.ok or outcome.rejected:
                    outcomes[i] = outcome
                else:
                    again.append(i)
                    outcomes[i] = outcome
            if len(response.get("items", [])) < len(todo):  # pragma: no cover - a broken server
                raise RemoteError("OpenSearch answered a _bulk request with fewer items than it was sent")
            todo = again
            if not todo or attempt == self.retry.max_retries:
                break
            pause = self.retry.delay(attempt)
            log.info(
                "%d documents refused for now (%s); retry in %.2fs", len(todo), outcomes[todo[0]].error, pause
            )
            _sleep(pause, cancel)
        return [outcomes[i] for i in range(len(items))]

    def count(self, query: dict | None = None) -> int:
        body = {"query": query} if query else None
        return int(
            self._call("count documents", lambda: self.client.count(index=self.index, body=body))["count"]
        )

    def search(self, body: dict, cancel: CancelToken | None = None) -> dict:
        return self._call("search", lambda: self.client.search(index=self.index, body=body), cancel)

    def get_sources(self, doc_ids: list[str]) -> dict[str, dict]:
        """The stored documents (without vectors) for these ids; missing ones are left out."""
        raw = self._call("read documents", lambda: self.client.mget(index=self.index, body={"ids": doc_ids}))
        return {d["_id"]: d["_source"] for d in raw.get("docs", []) if d.get("found")}

    def iter_library_docs(
        self, library_id: str, page: int = 5000, cancel: CancelToken | None = None
    ) -> Iterator[tuple[str, int]]:
        """(doc id, image id) of every document one library wrote, in image id order."""
        after: list | None = None
        while True:
            body: dict = {
                "size": page, "query": {"term": {"library_id": library_id}},
                "sort": [{"image_id": "asc"}], "_source": False,
            }  # fmt: skip
            if after is not None:
                body["search_after"] = after
            hits = self.search(body, cancel)["hits"]["hits"]
            for hit in hits:
                yield hit["_id"], int(hit["sort"][0])
            if len(hits) < page:
                return
            after = hits[-1]["sort"]


def connect(settings: Settings, password: str | None = None) -> RemoteCluster:
    """A RemoteCluster for the configured URL(s), credentials and TLS options; `password`
    instead of the keyring's (the app tests a password before it stores it)."""
    from opensearchpy import OpenSearch

    urls = settings.remote_urls
    if not urls:
        raise SettingsError(
            "no OpenSearch URL configured: run `visualfinder sync --url https://HOST:9200` once"
        )
    options: dict[str, Any] = {
        "timeout": settings.remote_timeout_s,
        "max_retries": 0,  # ours, with backoff: see RemoteCluster._call
        "retry_on_timeout": False,
        "verify_certs": settings.remote_verify_tls,
        "ssl_show_warn": False,  # we warn once per connection, below, in our own words
    }
    if any(u.startswith("https:") for u in urls):
        if settings.remote_ca_bundle:
            bundle = Path(settings.remote_ca_bundle).expanduser()
            if not bundle.is_file():
                raise SettingsError(f"the CA bundle {bundle} does not exist")
            options["ca_certs"] = str(bundle)
        if not settings.remote_verify_tls:
            log.warning(
                "TLS certificate verification is OFF for %s: anyone on the network path could read or change "
                "what is sent, including the password (set remote_verify_tls = true, or use --ca-bundle)",
                ", ".join(urls),
            )
    if settings.remote_aws_region:
        options["http_auth"] = _aws_auth(settings.remote_aws_region, settings.remote_aws_service)
    elif settings.remote_user:
        if password is None:
            password = credentials.get_password(settings.remote_user, urls[0])
        if password is None:
            raise RemoteAuthError(
                f"no password stored for {settings.remote_user} at {urls[0]}: run `visualfinder sync --ask-password` "
                f"(kept in the OS keyring) or set {credentials.ENV_PASSWORD}"
            )
        options["http_auth"] = (settings.remote_user, password)
    client = OpenSearch(hosts=urls, **options)
    retry = RetryPolicy(settings.remote_max_retries, settings.remote_backoff_s, settings.remote_backoff_max_s)
    return RemoteCluster(client, urls, settings.remote_index, retry, settings.remote_engine)


def _aws_auth(region: str, service: str) -> Any:
    """SigV4 signing with botocore's credential chain (env vars, ~/.aws, instance role)."""
    try:
        import botocore.session
    except ImportError as exc:
        raise SettingsError(
            "signing requests for Amazon OpenSearch Service needs botocore: pip install 'visualfinder[aws]'"
        ) from exc
    from opensearchpy import Urllib3AWSV4SignerAuth

    creds = botocore.session.Session().get_credentials()
    if creds is None:
        raise RemoteAuthError(
            "remote_aws_region is set but no AWS credentials were found (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, or an instance role)"
        )
    return Urllib3AWSV4SignerAuth(creds, region, service)


def _item_outcome(item: BulkItem, result: dict) -> ItemOutcome:
    body = next(iter(result.values()), {})
    status = int(body.get("status", 500))
    if 200 <= status < 300 or (item.op == "delete" and status == 404):  # deleting a missing doc is done
        return ItemOutcome(item.key, True)
    error = body.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type')}: {error.get('reason')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause.get('reason')})"
    else:
        reason = str(error or f"status {status}")
    return ItemOutcome(item.key, False, f"{status} {reason}", rejected=status not in RETRYABLE_STATUS)


def _reason(exc: Exception) -> str:
    """A short reason for an opensearch-py error, never the request (which may hold documents)."""
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from opensearchpy.exceptions import ConnectionTimeout

    if isinstance(exc, ConnectionTimeout):
        return "timed out"
    if isinstance(exc, OSConnectionError):
        text = str(getattr(exc, "info", "") or exc)
        for hint in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                     "Remote end closed", "certificate verify failed"):  # fmt: skip
            if hint in text:
                return hint.lower()
        return text.splitlines()[0][:200]
    info = getattr(exc, "info", None)
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        err = info["error"]
        return f"{err.get('type')}: {err.get('reason')}"[:300]
    return str(getattr(exc, "error", exc))[:300]


def _sleep(seconds: float, cancel: CancelToken | None) -> None:
    if cancel is None:
        time.sleep(seconds)
    elif cancel.sleep(seconds):
        raise Cancelled("cancelled")
