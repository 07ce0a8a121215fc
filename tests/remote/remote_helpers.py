"""Helpers for the OpenSearch tests: a real HTTP proxy in front of osmem, and a file keyring.

`ClusterProxy` is a real http.server on 127.0.0.1 forwarding to an osmem clone. Tests use it
to see the requests visualfinder sends, to answer 429s, to hold requests (a slow cluster),
to go away and come back on the same port (a stopped server), and to answer the k-NN plugin's
queries, which osmem lacks: for a `knn` or `knn_score` query it asks osmem for the filtered
documents and scores them by the formulas of the OpenSearch k-NN docs ("Spaces").
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keyring.backend
import numpy as np

# Short timeouts and backoff so failure paths stay fast.
FAST_REMOTE = {
    "remote_backoff_s": 0.01,
    "remote_backoff_max_s": 0.05,
    "remote_max_retries": 3,
    "remote_timeout_s": 10.0,
    "remote_push_delay_s": 0.05,
}


# --- a keyring backend for headless tests --------------------------------------------------


class FileKeyring(keyring.backend.KeyringBackend):
    """A real keyring backend storing entries in a JSON file (VF_TEST_KEYRING_FILE).

    Subprocesses select it with PYTHON_KEYRING_BACKEND=remote_helpers.FileKeyring.
    """

    priority = 1

    def _path(self) -> Path:
        return Path(os.environ["VF_TEST_KEYRING_FILE"])

    def _load(self) -> dict:
        path = self._path()
        return json.loads(path.read_text()) if path.exists() else {}

    def get_password(self, service, username):
        return self._load().get(f"{service}\n{username}")

    def set_password(self, service, username, password):
        data = self._load()
        data[f"{service}\n{username}"] = password
        self._path().write_text(json.dumps(data))

    def delete_password(self, service, username):
        data = self._load()
        if data.pop(f"{service}\n{username}", None) is None:
            from keyring.errors import PasswordDeleteError

            raise PasswordDeleteError("no such password")
        self._path().write_text(json.dumps(data))


# --- the proxy -----------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float


@dataclass
class ProxyScript:
    """What the proxy does to the next requests (tests change it while it runs)."""

    bulk_statuses: list[int] = field(default_factory=list)  # answer whole _bulk requests with these
    item_429_rounds: int = 0  # in this many _bulk requests, refuse every other item with 429
    hold: threading.Event | None = None  # requests wait until this is set (a slow cluster)
    knn: bool = False  # answer knn / knn_score queries (osmem lacks the k-NN plugin)
    version: str | None = None  # claim this OpenSearch version in GET / (an older cluster)


class ClusterProxy:
    def __init__(self, upstream: str, port: int = 0):
        self.upstream = upstream.rstrip("/")
        self.script = ProxyScript()
        self.seen: list[Seen] = []
        self.in_flight = threading.Event()
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set = set()
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def up(self) -> None:
        """Start listening (again, on the same port)."""
        proxy = self

        class Handler(_Handler):
            owner = proxy

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening and drop open connections: as with a stopped server, connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self.script.hold is not None:
            self.script.hold.set()
        self.down()

    def requests(self, path_part: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path_part in s.path]

    def bulk_requests(self) -> list[Seen]:
        return [s for s in self.requests("_bulk") if s.method == "POST" or s.method == "PUT"]

    # --- upstream -------------------------------------------------------------------------

    def forward(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        req = urllib.request.Request(self.upstream + path, data=body or None, method=method)
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def bulk_with_item_429(self, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        """Forward every other action; answer the others with a per-item 429, as a busy node does."""
        lines = body.decode("utf-8").splitlines()
        actions: list[list[str]] = []
        i = 0
        while i < len(lines):
            action = json.loads(lines[i])
            take = 1 if "delete" in action else 2
            actions.append(lines[i : i + take])
            i += take
        keep = [a for n, a in enumerate(actions) if n % 2 == 0]
        status, raw = self.forward(
            "POST", path, ("\n".join(x for a in keep for x in a) + "\n").encode(), headers
        )
        upstream_items = iter(json.loads(raw)["items"])
        items = []
        for n, a in enumerate(actions):
            if n % 2 == 0:
                items.append(next(upstream_items))
            else:
                op, meta = next(iter(json.loads(a[0]).items()))
                items.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 429, "error": {
                    "type": "es_rejected_execution_exception", "reason": "rejected execution (queue full)"}}})  # fmt: skip
        return status, json.dumps({"took": 1, "errors": True, "items": items}).encode()

    def knn_search(self, path: str, query: dict) -> tuple[int, bytes] | None:
        """Answer a knn / script_score(knn_score) query like the k-NN plugin would, or None."""
        q = query.get("query", {})
        size = int(query.get("size", 10))
        if "knn" in q:
            field_name, spec = next(iter(q["knn"].items()))
            vector, exact, space = spec["vector"], False, None
            inner = spec.get("filter") or {"match_all": {}}
        elif "script_score" in q and q["script_score"].get("script", {}).get("lang") == "knn":
            params = q["script_score"]["script"]["params"]
            field_name, vector, exact, space = (
                params["field"],
                params["query_value"],
                True,
                params["space_type"],
            )
            inner = q["script_score"].get("query") or {"match_all": {}}
        else:
            return None
        index = path.split("/")[1]
        if space is None:
            mapping = json.loads(self.forward("GET", f"/{index}/_mapping", b"", {})[1])
            space = next(iter(mapping.values()))["mappings"]["properties"][field_name]["method"]["space_type"]
        body = json.dumps({"size": 10_000, "query": inner}).encode()
        status, raw = self.forward("POST", f"/{index}/_search", body, {"Content-Type": "application/json"})
        if status != 200:
            return status, raw
        docs = json.loads(raw)["hits"]["hits"]
        q_vec = np.asarray(vector, dtype=np.float64)
        scored = []
        for doc in docs:
            v = np.asarray(doc["_source"][field_name], dtype=np.float64)
            scored.append((documented_score(space, q_vec, v, exact), doc))
        scored.sort(key=lambda item: -item[0])
        excludes = set(query.get("_source", {}).get("excludes", []))
        hits = []
        for score, doc in scored[:size]:
            source = {k: v for k, v in doc["_source"].items() if k not in excludes}
            hits.append({"_index": index, "_id": doc["_id"], "_score": score, "_source": source})
        answer = {"took": 1, "timed_out": False, "hits": {"total": {"value": len(docs), "relation": "eq"},
                                                          "max_score": hits[0]["_score"] if hits else None,
                                                          "hits": hits}}  # fmt: skip
        return 200, json.dumps(answer).encode()


def documented_score(space: str, q: np.ndarray, v: np.ndarray, exact: bool) -> float:
    """OpenSearch's score for one document (k-NN docs, "Spaces"; knn_score adds 1 to the cosine)."""
    if space == "cosinesimil":
        cos = float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v)))
        return 1.0 + cos if exact else (2.0 - (1.0 - cos)) / 2.0
    if space == "innerproduct":
        d = -float(q @ v)
        return 1.0 / (1.0 + d) if d >= 0 else -d + 1.0
    if space == "l2":
        return 1.0 / (1.0 + float(np.sum((q - v) ** 2)))
    raise ValueError(space)


class _Handler(BaseHTTPRequestHandler):
    owner: ClusterProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def setup(self):
        super().setup()
        with self.owner._lock:
            self.owner._connections.add(self.request)

    def finish(self):
        with self.owner._lock:
            self.owner._connections.discard(self.request)
        try:
            super().finish()
        except OSError:
            pass

    def _handle(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") == "gzip":  # pragma: no cover - we do not compress
            import gzip

            body = gzip.decompress(body)
        headers = {k.title(): v for k, v in self.headers.items()}  # one spelling: Authorization, X-Amz-Date
        with proxy._lock:
            proxy.seen.append(Seen(self.command, self.path, headers, body, time.monotonic()))
        script = proxy.script
        if script.hold is not None and not script.hold.is_set():
            proxy.in_flight.set()
            script.hold.wait(30)
        path = self.path
        status, raw = None, b""
        if "_bulk" in path:
            with proxy._lock:
                forced = script.bulk_statuses.pop(0) if script.bulk_statuses else None
                item_429 = script.item_429_rounds > 0
                if item_429 and forced is None:
                    script.item_429_rounds -= 1
            if forced is not None:
                status, raw = forced, json.dumps({"error": {"type": "rejected", "reason": "too many requests"},
                                                  "status": forced}).encode()  # fmt: skip
            elif item_429:
                status, raw = proxy.bulk_with_item_429(path, body, headers)
        elif script.knn and path.startswith("/_cat/plugins"):  # the k-NN plugin osmem lacks
            status, raw = 200, json.dumps([{"name": "osmem-node", "component": "opensearch-knn"}]).encode()
        elif script.knn and path.split("?")[0].endswith("/_search") and body:
            answered = proxy.knn_search(path.split("?")[0], json.loads(body))
            if answered is not None:
                status, raw = answered
        if status is None:
            status, raw = proxy.forward(self.command, path, body, headers)
        if path == "/" and self.command == "GET" and script.version:
            info = json.loads(raw)
            info["version"]["number"] = script.version
            raw = json.dumps(info).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


def basic_auth(header: str | None) -> str | None:
    if not header or not header.startswith("Basic "):
        return None
    return base64.b64decode(header[6:]).decode()


def remote_docs(client, index: str = "visualfinder") -> dict[str, dict]:
    """Every document in the index, by id (vectors included); none while the index does not exist."""
    if not client.indices.exists(index=index):
        return {}
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 10_000, "query": {"match_all": {}}})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}
