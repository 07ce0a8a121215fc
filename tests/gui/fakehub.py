"""A hand-written stand-in for the Hugging Face Hub's file download (HEAD for metadata, GET for
the bytes), on a local port: the first-run download is tested without the internet.

It serves one weights file: vf-tiny's seeded random weights saved with torch, registered with
open_clip as the pretrained tag `fakehub` of vf-tiny."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = "visualfinder-tests/vf-tiny-fakehub"
FILENAME = "open_clip_pytorch_model.bin"
TAG = "fakehub"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny_weights(path: Path) -> bytes:
    """vf-tiny's weights (a real state dict), as open_clip would download them."""
    import open_clip
    import torch

    from visualfinder.models.embedder import _open_clip

    _open_clip()  # registers vf-tiny's config
    model = open_clip.create_model("vf-tiny")
    torch.save(model.state_dict(), path)
    return path.read_bytes()


class FakeHub:
    def __init__(self, payload: bytes, chunk: int = 4096):
        self.payload = payload
        self.requests: list[tuple[str, str]] = []
        etag = hashlib.sha256(payload).hexdigest()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _head(self) -> bool:
                hub.requests.append((self.command, self.path))
                if not self.path.endswith(f"/{REPO}/resolve/main/{FILENAME}"):
                    self.send_error(404)
                    return False
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(hub.payload)))
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                return True

            def do_HEAD(self):  # noqa: N802 - the http.server API
                self._head()

            def do_GET(self):  # noqa: N802
                if self._head():
                    for start in range(0, len(hub.payload), chunk):
                        self.wfile.write(hub.payload[start : start + chunk])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
