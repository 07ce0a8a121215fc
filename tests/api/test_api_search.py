"""The search contract over real HTTP: JSON and multipart bodies, CSV, filters, the error shape."""

from __future__ import annotations

import csv
import io
import json

from imagegen import huge_png_header


def _jpeg(path) -> bytes:
    return path.read_bytes()


def test_status_reports_the_library(shop):
    server, chairs, lamps, root = shop
    answer = server.call("GET", "/api/v1/status")
    assert answer.status == 200
    status = answer.json()
    assert (status["images"], status["skipped"], status["metric"]) == (14, 0, "cosine")
    assert status["model"].startswith("vf-tiny") and status["remote"] is None
    assert status["index"]["count"] == 14
    assert sorted(f["path"] for f in status["folders"]) == [str(root / "catalog" / "chairs"),
                                                          str(root / "catalog" / "lamps")]  # fmt: skip


def test_an_uploaded_photo_finds_its_own_file_first(shop):
    server, chairs, lamps, root = shop
    answer = server.call(
        "POST", "/api/v1/search", files=[("image", "query.jpg", _jpeg(chairs[3]))], fields={"k": 3}
    )
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["plan"] in ("exact", "hnsw") and body["candidates"] == 14 and body["took_ms"] >= 0
    first = body["results"][0]
    assert first["path"] == str(chairs[3]) and first["score"] > 0.999 and first["rank"] == 1
    assert set(first) >= {"rank", "id", "path", "score", "distance", "title", "tags", "description", "sku",
                          "url", "price", "width", "height", "thumbnail_url"}  # fmt: skip
    assert first["thumbnail_url"] == f"/api/v1/images/{first['id']}/thumbnail"
    assert len(body["results"]) == 3


def test_json_search_takes_text_filters_similar_and_minus(shop):
    server, chairs, lamps, root = shop
    lamps_dir = str(root / "catalog" / "lamps")
    answer = server.call(
        "POST", "/api/v1/search", json_body={"text": "a lamp", "k": 20, "filters": {"folder": lamps_dir}}
    )
    assert answer.status == 200, answer.body
    assert {r["path"] for r in answer.json()["results"]} == {str(p) for p in lamps}
    assert answer.json()["plan"] == "exact"

    answer = server.call("POST", "/api/v1/search", json_body={"q": "type:png", "k": 20})
    assert {r["path"] for r in answer.json()["results"]} == {str(p) for p in lamps}

    first = server.call("POST", "/api/v1/search", files=[("image", "q.png", lamps[0].read_bytes())]).json()
    lamp_id = first["results"][0]["id"]
    similar = server.call("POST", "/api/v1/search", json_body={"similar_to": lamp_id, "k": 2}).json()
    assert similar["results"][0]["id"] == lamp_id
    minus = server.call("POST", "/api/v1/search",
                        json_body={"similar_to": lamp_id, "minus": ["a red chair"], "k": 2})  # fmt: skip
    assert minus.status == 200 and len(minus.json()["results"]) == 2

    high = server.call(
        "POST", "/api/v1/search", json_body={"similar_to": lamp_id, "k": 14, "threshold": 0.999}
    )
    assert [r["id"] for r in high.json()["results"]] == [lamp_id]


def test_results_come_as_csv_from_the_one_exporter(shop):
    server, chairs, lamps, root = shop
    for headers, path in (({"Accept": "text/csv"}, "/api/v1/search"), ({}, "/api/v1/search?format=csv")):
        answer = server.call("POST", path, json_body={"text": "chair", "k": 4}, headers=headers)
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(answer.body.decode())))
        assert rows[0][:4] == ["rank", "score", "distance", "path"] and len(rows) == 5


def test_image_url_to_loopback_is_refused(shop):
    server, *_ = shop
    for url in ("http://127.0.0.1:1/photo.jpg", "http://localhost:1/photo.jpg", "http://[::1]:1/a.jpg",
                "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/a.jpg"):  # fmt: skip
        answer = server.call("POST", "/api/v1/search", json_body={"image_url": url})
        assert answer.status == 400, url
        assert "public addresses" in answer.json()["error"]["message"], answer.body


def test_hostile_uploads_get_a_clear_error_never_a_traceback(shop):
    server, chairs, *_ = shop
    good = chairs[0].read_bytes()
    cases = {
        "zero bytes": (b"", 415, "empty"),
        "truncated": (good[: len(good) // 3], 415, "truncated"),
        "text named .jpg": (b"hello, I am not a picture\n" * 20, 415, "not an image"),
        "decompression bomb": (huge_png_header(60000, 60000), 413, "too large"),
    }
    for what, (content, status, words) in cases.items():
        answer = server.call("POST", "/api/v1/search", files=[("image", "photo.jpg", content)])
        assert answer.status == status, (what, answer.body)
        assert answer.headers["content-type"] == "application/json", what
        assert words in answer.json()["error"]["message"], (what, answer.body)
        assert "Traceback" not in answer.body.decode()


def test_a_100_mb_body_is_refused_with_413_before_it_is_read(shop):
    import http.client

    server, *_ = shop
    host, port = server.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("POST", "/api/v1/search")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(100 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"--x\r\n" + b"\0" * 65536)  # a first part; the answer comes without the rest
    response = conn.getresponse()
    assert response.status == 413
    assert b'"too_large"' in response.read()
    conn.close()


def test_errors_have_one_json_shape(shop):
    server, *_ = shop
    cases = [
        (("GET", "/api/v1/nothing-here"), 404, "not_found"),
        (("GET", "/api/v1/images/999999"), 404, "not_found"),
        (("GET", "/api/v1/images/abc"), 422, "invalid_request"),
        (("POST", "/api/v1/search"), 400, "bad_query"),  # an empty JSON body: nothing to search for
        (("DELETE", "/api/v1/status"), 405, "method_not_allowed"),
        (("GET", "/api/v1/jobs/12345"), 404, "not_found"),
    ]
    for (method, path), status, code in cases:
        answer = server.call(method, path)
        assert (answer.status, answer.error_code) == (status, code), (path, answer.body)
        assert set(answer.json()["error"]) == {"code", "message"}
    bad = server.call("POST", "/api/v1/search", json_body={"text": "x", "k": "many"})
    assert bad.status == 422 and "k" in bad.json()["error"]["message"]
    unknown = server.call("POST", "/api/v1/search", json_body={"txt": "x"})
    assert unknown.status == 422
    plain = server.call("POST", "/api/v1/search", data=b"chair", headers={"Content-Type": "text/plain"})
    assert (plain.status, plain.error_code) == (415, "unsupported_media_type")


def test_openapi_and_docs_are_served(shop):
    server, *_ = shop
    spec = server.call("GET", "/openapi.json").json()
    for path in ("/api/v1/status", "/api/v1/search", "/api/v1/images/{image_id}", "/api/v1/images/{image_id}/thumbnail",
                 "/api/v1/images/{image_id}/similar", "/api/v1/folders", "/api/v1/jobs/{job_id}", "/api/v1/metadata"):  # fmt: skip
        assert path in spec["paths"], path
    search_body = spec["paths"]["/api/v1/search"]["post"]["requestBody"]["content"]
    assert set(search_body) == {"application/json", "multipart/form-data"}
    assert "image_url" in spec["components"]["schemas"]["SearchBody"]["properties"]
    docs = server.call("GET", "/docs")
    assert docs.status == 200 and b"swagger" in docs.body.lower()


def _chunked_post(server, path: str, content_type: str, first: bytes, total: int) -> tuple[int, dict, bytes]:
    """POST with Transfer-Encoding: chunked (no Content-Length): `first`, then zeros up to `total`
    bytes. The server may answer and close before the body ends; the answer is read either way."""
    import http.client

    host, port = server.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", content_type)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    sent, chunk = 0, b"\0" * 65536
    extra = max(0, -(-(total - len(first)) // len(chunk)))  # whole chunks after `first`
    try:
        for piece in (first, *[chunk] * extra):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused while it arrived: the answer is waiting
    response = conn.getresponse()
    answer = (response.status, dict(response.getheaders()), response.read())
    conn.close()
    assert sent > 0
    return answer


def test_a_chunked_body_over_the_limit_is_refused_with_413_json_while_it_arrives(shop):
    server, chairs, *_ = shop
    limit = 25 * 1024 * 1024  # api_max_upload_bytes' default
    head = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + chairs[0].read_bytes())  # fmt: skip
    for content_type, first in (
        ("multipart/form-data; boundary=x", head),
        ("application/json", b'{"text": "'),
    ):
        status, headers, body = _chunked_post(
            server, "/api/v1/search", content_type, first, limit + 2 * 65536
        )
        assert status == 413, (content_type, body[:300])
        assert headers["content-type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["code"] == "too_large" and "larger than this server accepts" in error["message"]
    # Below the limit, a chunked upload is answered as any other.
    status, _, body = _chunked_post(
        server, "/api/v1/search", "multipart/form-data; boundary=x", head + b"\r\n--x--\r\n", 0
    )
    assert status == 200 and json.loads(body)["results"][0]["path"] == str(chairs[0])


def test_a_search_with_too_many_terms_is_refused_before_any_is_fetched(shop):
    """Thousands of texts or URLs in one body would hold the model thread for every client."""
    server, chairs, *_ = shop
    urls = [f"http://127.0.0.1:9/{i}.jpg" for i in range(40)]  # refused addresses: never fetched
    too_many = {"text": [f"chair {i}" for i in range(20)], "minus": urls[:13]}
    for body in (too_many, {"minus": urls, "similar_to": 1}):
        answer = server.call("POST", "/api/v1/search", json_body=body)
        assert (answer.status, answer.error_code) == (422, "invalid_request"), answer.body
        assert "at most 32" in answer.json()["error"]["message"]
    uploads = [("image", f"q{i}.jpg", _jpeg(chairs[0])) for i in range(3)]
    fields = {"text": [f"chair {i}" for i in range(20)], "minus_text": [f"lamp {i}" for i in range(10)]}
    form = server.call("POST", "/api/v1/search", files=uploads, fields=fields)
    assert (form.status, form.error_code) == (422, "invalid_request"), form.body
    enough = server.call("POST", "/api/v1/search", json_body={"text": [f"chair {i}" for i in range(32)]})
    assert enough.status == 200, enough.body
    # More files than terms: refused as too many, in the same JSON shape (not Starlette's 400).
    files = [("image", f"q{i}.jpg", b"x") for i in range(40)]
    answer = server.call("POST", "/api/v1/search", files=files)
    assert (answer.status, answer.error_code) == (422, "invalid_request"), answer.body
    assert "Too many files" in answer.json()["error"]["message"]
    broken = server.call("POST", "/api/v1/search", data=b"--nope\r\nno headers", headers={
        "Content-Type": "multipart/form-data; boundary=other"})  # fmt: skip
    assert (broken.status, broken.error_code) == (400, "bad_form"), broken.body


def test_an_int8_library_is_served_and_its_uploads_find_themselves(tmp_path):
    from api_helpers import ApiServer, index_folders, write_settings
    from imagegen import make_catalog

    files = make_catalog(tmp_path / "catalog", 5)
    data_dir = tmp_path / "vf-data"
    write_settings(data_dir, model_precision="int8")
    index_folders(data_dir, tmp_path / "catalog")
    server = ApiServer(data_dir)
    try:
        assert server.call("GET", "/api/v1/status").json()["model"].endswith("/int8")
        answer = server.call(
            "POST", "/api/v1/search", files=[("image", "q.jpg", _jpeg(files[2]))], fields={"k": 2}
        )
        assert answer.status == 200, answer.body
        first = answer.json()["results"][0]
        assert first["path"] == str(files[2]) and first["score"] > 0.999
    finally:
        assert server.stop() == 0
