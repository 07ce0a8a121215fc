"""Query images from a URL, against a real local http.server (no network): size limit, timeout,
content-type check, redirects."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from imagegen import make_catalog, product_image

from visualfinder.errors import QueryError
from visualfinder.ingest.fetch import fetch_image, is_url
from visualfinder.library.facade import QueryTerm, SearchRequest, open_library


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    product_image(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        status, headers, body, delay = route
        if delay.get("before_headers"):
            time.sleep(delay["before_headers"])
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if delay.get("per_chunk"):
            for start in range(0, len(body), 1024):
                self.wfile.write(body[start : start + 1024])
                self.wfile.flush()
                time.sleep(delay["per_chunk"])
        else:
            self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the client hanging up on a too-large or too-slow answer is what those tests do


@pytest.fixture
def server():
    image = _jpeg(3)
    big = b"\xff\xd8" + b"\0" * 300_000
    _Handler.routes = {
        "/q.jpg": (200, {"Content-Type": "image/jpeg", "Content-Length": str(len(image))}, image, {}),
        "/octet": (200, {"Content-Type": "application/octet-stream"}, image, {}),
        "/page.html": (200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>hi</html>", {}),
        "/fake.jpg": (200, {"Content-Type": "application/octet-stream"}, b"<html>not an image</html>", {}),
        "/big.jpg": (200, {"Content-Type": "image/jpeg", "Content-Length": str(len(big))}, big, {}),
        "/big-unsized.jpg": (200, {"Content-Type": "image/jpeg"}, big, {}),
        "/slow.jpg": (200, {"Content-Type": "image/jpeg"}, image[: 20 * 1024], {"per_chunk": 0.3}),
        "/silent.jpg": (200, {"Content-Type": "image/jpeg"}, image, {"before_headers": 60}),
        "/moved": (302, {"Location": "/q.jpg", "Content-Length": "0"}, b"", {}),
        "/to-ftp": (302, {"Location": "ftp://example.invalid/x.jpg", "Content-Length": "0"}, b"", {}),
        "/logo.svg": (200, {"Content-Type": "image/svg+xml"}, b"<svg/>", {}),
    }
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_url_query_finds_the_same_image(settings, server, tmp_path):
    make_catalog(tmp_path / "catalog", 5)
    library = open_library(settings)
    try:
        library.index([tmp_path / "catalog"])
        results = library.search(SearchRequest([QueryTerm("url", f"{server}/q.jpg")], k=1)).results
        assert results[0].path.endswith("product_0003.jpg") and results[0].score > 0.99
        moved = library.search(SearchRequest([QueryTerm("url", f"{server}/moved")], k=1)).results
        assert moved[0].id == results[0].id
        octet = library.search(SearchRequest([QueryTerm("url", f"{server}/octet", crop=(0, 0, 0.5, 1))], k=1))
        assert octet.results
        with pytest.raises(QueryError, match="not an image"):
            library.search(SearchRequest([QueryTerm("url", f"{server}/fake.jpg")], k=1))
    finally:
        library.close()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/page.html", r"is not an image \(the server sent text/html\)"),
        ("/big.jpg", "too large"),
        ("/big-unsized.jpg", "too large"),
        ("/missing.jpg", "answered 404"),
        ("/to-ftp", "not http"),
        ("/logo.svg", "SVG"),
        ("/slow.jpg", "took longer than 1 s"),
        ("/silent.jpg", "no answer within 1 s"),
    ],
)
def test_bad_urls_are_one_line_errors(server, path, message):
    started = time.monotonic()
    with pytest.raises(QueryError, match=message):
        fetch_image(server + path, max_bytes=200_000, timeout=1.0)
    # A safety net: the client gave up well before the servers (6 s of chunks, 60 s of silence) finished.
    assert time.monotonic() - started < 30


def test_only_http_urls_are_fetched():
    with pytest.raises(QueryError, match="only http"):
        fetch_image("file:///etc/passwd", max_bytes=1000, timeout=1)
    assert is_url("https://x/y.jpg") and is_url("HTTP://x") and not is_url("/tmp/x.jpg")


def test_the_cli_searches_by_url(server, tmp_path, capsys):
    import json

    from visualfinder.cli.main import main

    make_catalog(tmp_path / "catalog", 5)
    assert main(["index", str(tmp_path / "catalog")]) == 0
    capsys.readouterr()
    assert main(["search", f"{server}/q.jpg", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"].endswith("product_0003.jpg")
    assert main(["search", f"{server}/page.html"]) == 2
    err = capsys.readouterr().err
    assert "is not an image" in err and err.count("\n") == 1
