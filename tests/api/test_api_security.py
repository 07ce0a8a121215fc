"""The token, the loopback default, CORS, hidden paths, URL fetching rules, the model queue,
and a shutdown that lets the request in flight finish."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from api_helpers import TINY_ENV, ApiServer, index_folders, write_settings
from imagegen import make_catalog, product_image
from procutil import subprocess_env

from visualfinder.api.errors import ApiError
from visualfinder.api.gate import ModelGate
from visualfinder.errors import QueryError
from visualfinder.ingest.fetch import fetch_image, is_public_address


@pytest.fixture
def catalog(tmp_path):
    files = make_catalog(tmp_path / "catalog", 5)
    data_dir = tmp_path / "vf-data"
    index_folders(data_dir, tmp_path / "catalog")
    return data_dir, files


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    product_image(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class _ImageSite(BaseHTTPRequestHandler):
    """/photo.jpg, /slow.jpg (held until `release` is set), /r/N redirects N more times."""

    photo = b""
    release = threading.Event()
    arrived = threading.Event()

    def do_GET(self):  # noqa: N802 - the http.server API
        if self.path.startswith("/r/"):
            left = int(self.path[3:])
            self.send_response(302)
            self.send_header("Location", f"/r/{left - 1}" if left > 1 else "/photo.jpg")
            self.end_headers()
            return
        if self.path == "/slow.jpg":
            type(self).arrived.set()
            type(self).release.wait(60)
        if self.path not in ("/photo.jpg", "/slow.jpg"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.photo)))
        self.end_headers()
        self.wfile.write(self.photo)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_site():
    _ImageSite.photo = _jpeg(3)
    _ImageSite.release = threading.Event()
    _ImageSite.arrived = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ImageSite)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _ImageSite.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_with_a_token_every_api_request_needs_it(catalog):
    data_dir, files = catalog
    server = ApiServer(data_dir, env={"VISUALFINDER_API_TOKEN": "s3cret-token"})
    try:
        missing = server.call("GET", "/api/v1/status")
        assert (missing.status, missing.error_code) == (401, "unauthorized")
        wrong = server.call("GET", "/api/v1/status", headers={"Authorization": "Bearer s3cret-tokem"})
        assert wrong.status == 401 and wrong.json()["error"]["message"] == "the token is not valid"
        basic = server.call("GET", "/api/v1/status", headers={"Authorization": "Basic czNjcmV0"})
        assert basic.status == 401
        search = server.call("POST", "/api/v1/search", json_body={"text": "x"})
        assert search.status == 401
        server.token = "s3cret-token"
        assert server.call("GET", "/api/v1/status").status == 200
        assert server.call("GET", "/openapi.json", headers={"Authorization": ""}).status == 200
    finally:
        server.stop()


def test_new_token_writes_a_private_file_that_the_server_then_requires(catalog):
    data_dir, files = catalog
    env = subprocess_env(**TINY_ENV, VISUALFINDER_DATA_DIR=str(data_dir))
    env.pop("VISUALFINDER_API_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "visualfinder", "serve", "--new-token"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    path = data_dir / "api-token"
    assert len(token) >= 32 and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    server = ApiServer(data_dir)
    try:
        assert server.call("GET", "/api/v1/status").status == 401
        server.token = token
        assert server.call("GET", "/api/v1/status").json()["images"] == 5
    finally:
        server.stop()


def test_binding_beyond_loopback_without_a_token_refuses_to_start(catalog):
    data_dir, files = catalog
    env = subprocess_env(**TINY_ENV, VISUALFINDER_DATA_DIR=str(data_dir))
    env.pop("VISUALFINDER_API_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "visualfinder", "serve", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0 without a token" in lines[0]
    assert "Traceback" not in proc.stderr


def test_a_public_deployment_hides_paths_and_sends_cors_only_to_its_origins(catalog):
    data_dir, files = catalog
    write_settings(data_dir, api_expose_paths=False, api_cors_origins="https://shop.example")
    server = ApiServer(data_dir, env={"VISUALFINDER_API_TOKEN": "t0ken"})
    server.token = "t0ken"
    try:
        found = server.call(
            "POST", "/api/v1/search", files=[("image", "q.jpg", files[1].read_bytes())]
        ).json()
        assert found["results"][0]["path"] == files[1].name
        assert all(os.sep not in r["path"] for r in found["results"])
        status = server.call("GET", "/api/v1/status")
        assert status.json()["folders"] == [] and str(files[0].parent) not in status.body.decode()
        csv_text = server.call(
            "POST", "/api/v1/search?format=csv", json_body={"text": "x", "k": 5}
        ).body.decode()
        assert str(files[0].parent) not in csv_text and files[0].name in csv_text
        record = server.call("GET", f"/api/v1/images/{found['results'][0]['id']}").json()
        assert record["path"] == files[1].name

        allowed = server.call("GET", "/api/v1/status", headers={"Origin": "https://shop.example"})
        assert allowed.headers.get("access-control-allow-origin") == "https://shop.example"
        other = server.call("GET", "/api/v1/status", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in {k.lower() for k in other.headers}
    finally:
        server.stop()


def test_no_cors_headers_by_default(catalog):
    data_dir, files = catalog
    server = ApiServer(data_dir)
    try:
        answer = server.call("GET", "/api/v1/status", headers={"Origin": "https://shop.example"})
        assert answer.status == 200
        assert not [k for k in answer.headers if k.lower().startswith("access-control-")]
        preflight = server.call("OPTIONS", "/api/v1/search", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
        assert preflight.status == 405 and preflight.headers["content-type"] == "application/json"
    finally:
        server.stop()


def test_private_urls_when_allowed_redirects_limited_and_shutdown_finishes_the_request_in_flight(
    catalog, image_site
):
    data_dir, files = catalog
    write_settings(data_dir, api_allow_private_urls=True)
    server = ApiServer(data_dir)
    try:
        ok = server.call("POST", "/api/v1/search", json_body={"image_url": f"{image_site}/photo.jpg", "k": 2})
        assert ok.status == 200, ok.body
        assert ok.json()["results"][0]["path"] == str(files[3])
        three = server.call("POST", "/api/v1/search", json_body={"image_url": f"{image_site}/r/3"})
        assert three.status == 200
        four = server.call("POST", "/api/v1/search", json_body={"image_url": f"{image_site}/r/4"})
        assert four.status == 400 and "more than 3 redirects" in four.json()["error"]["message"]
        cropped = server.call("POST", "/api/v1/search", json_body={
            "image_url": f"{image_site}/photo.jpg", "crop": [0, 0, 0.5, 0.5], "k": 2})  # fmt: skip
        assert (
            cropped.status == 200 and cropped.json()["results"][0]["score"] < ok.json()["results"][0]["score"]
        )

        answers = []
        in_flight = threading.Thread(target=lambda: answers.append(server.call(
            "POST", "/api/v1/search", json_body={"image_url": f"{image_site}/slow.jpg", "k": 1})))  # fmt: skip
        in_flight.start()
        assert _ImageSite.arrived.wait(60)  # the server is fetching: the request is in flight
        server.proc.send_signal(signal.SIGTERM)
        # The shutdown has begun once the server takes no new connections; only then may the
        # request in flight end. No fixed sleep: the order is observed, whatever the speed.
        deadline = time.monotonic() + 120  # a safety net only
        while server.accepting() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.accepting() and in_flight.is_alive() and not answers
        _ImageSite.release.set()
        in_flight.join(120)
        assert server.proc.wait(120) == 0, server.stderr
        assert answers and answers[0].status == 200, answers
        assert answers[0].json()["results"][0]["path"] == str(files[3])
        assert "Traceback" not in server.stderr
    finally:
        server.stop()
    # Closed cleanly: the library opens again with its index as it was.
    proc = subprocess.run([sys.executable, "-m", "visualfinder", "status", "--json"], capture_output=True,
                          text=True, timeout=120,
                          env=subprocess_env(**TINY_ENV, VISUALFINDER_DATA_DIR=str(data_dir)))  # fmt: skip
    assert proc.returncode == 0 and '"health": "ok"' in proc.stdout


def test_the_model_gate_batches_queues_then_answers_429_and_503_with_retry_after():
    hold = threading.Event()
    batches: list[list] = []

    def answer(items):
        batches.append(list(items))
        if "hold" in items:
            hold.wait(30)
        return [ValueError("bad") if item == "bad" else item.upper() for item in items]

    async def scenario():
        gate = ModelGate(answer, queue_size=3, timeout_s=0.5)
        first = asyncio.ensure_future(gate.run("hold"))
        await asyncio.sleep(0.2)  # the model thread is busy with it
        second = asyncio.ensure_future(gate.run("a"))
        third = asyncio.ensure_future(gate.run("b"))
        await asyncio.sleep(0.05)
        with pytest.raises(ApiError) as full:
            await gate.run("c")
        assert full.value.status == 429 and full.value.retry_after >= 1
        for waiting in (second, third):
            with pytest.raises(ApiError) as waited:
                await waiting  # their turn never came within timeout_s
            assert waited.value.status == 503 and waited.value.retry_after >= 1
        hold.set()
        assert await first == "HOLD"
        gate.close()
        # Those waiting together go to the model together; a failing item fails alone.
        hold.clear()
        patient = ModelGate(answer, queue_size=10, timeout_s=60)
        busy = asyncio.ensure_future(patient.run("hold"))
        await asyncio.sleep(0.2)
        waiting = [asyncio.ensure_future(patient.run(item)) for item in ("x", "bad", "y")]
        await asyncio.sleep(0.1)
        hold.set()
        together = await asyncio.gather(busy, *waiting, return_exceptions=True)
        assert together[0] == "HOLD" and together[1] == "X" and together[3] == "Y"
        assert isinstance(together[2], ValueError)
        patient.close()
        with pytest.raises(ApiError) as closed:
            await gate.run("z")
        assert closed.value.status == 503

    asyncio.run(scenario())
    assert batches[0] == ["hold"] and ["a", "b"] not in batches  # expired ones never reach the model
    assert batches[-1] == ["x", "bad", "y"]


def test_public_address_rules():
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254", "::1", "fe80::1",
                    "0.0.0.0", "::ffff:127.0.0.1", "fc00::1", "100.64.0.1", "224.0.0.1"):  # fmt: skip
        assert not is_public_address(address), address
    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert is_public_address(address), address


def test_fetch_refuses_private_addresses_only_when_asked(image_site):
    url = f"{image_site}/photo.jpg"
    assert fetch_image(url, max_bytes=10**7, timeout=10) == _ImageSite.photo  # the CLI and the app
    for target in (url, url.replace("127.0.0.1", "localhost"), f"{image_site}/r/1"):
        with pytest.raises(QueryError, match="public addresses"):
            fetch_image(target, max_bytes=10**7, timeout=10, allow_private=False)


def test_a_flooded_server_answers_429_and_503_with_retry_after_then_recovers(catalog):
    """A real server with a tiny queue (4 searches, 0.2 s to get a turn), flooded by 24 clients
    at once: those beyond the queue get 429 busy, those whose turn does not come in time 503
    overloaded, each with Retry-After and the one error shape; the others are answered. Each
    round's requests carry more texts (a longer model call) until both refusals were seen, so
    the outcome does not depend on the machine's speed."""
    data_dir, files = catalog
    write_settings(data_dir, api_queue_size=4, api_queue_timeout_s=0.2, api_max_query_terms=100_000)
    server = ApiServer(data_dir)
    seen: Counter = Counter()
    try:
        texts = 16
        for round_ in range(10):
            bodies = [{"text": [f"chair {round_} {c} {i}" for i in range(texts)], "k": 3} for c in range(24)]
            with ThreadPoolExecutor(len(bodies)) as pool:
                answers = list(pool.map(lambda b: server.call("POST", "/api/v1/search", json_body=b), bodies))
            for answer in answers:
                seen[answer.status] += 1
                if answer.status == 200:
                    assert answer.json()["results"], answer.body
                    continue
                assert answer.status in (429, 503), answer.body
                assert answer.headers["content-type"] == "application/json"
                assert answer.json() == {"error": {"code": {429: "busy", 503: "overloaded"}[answer.status],
                                                   "message": answer.json()["error"]["message"]}}  # fmt: skip
                assert int(answer.headers["retry-after"]) >= 1
            if seen[429] and seen[503]:
                break
            texts *= 2
        print(f"flood: {dict(seen)} in {round_ + 1} rounds, up to {texts} texts per request")
        assert seen[200] and seen[429] and seen[503], seen
        # The flood over, the server answers again and holds nothing queued.
        assert server.call("POST", "/api/v1/search", json_body={"text": "chair", "k": 1}).status == 200
        assert server.call("GET", "/api/v1/status").json()["server"]["queued"] == 0
        assert "Traceback" not in server.stderr
    finally:
        server.stop()
