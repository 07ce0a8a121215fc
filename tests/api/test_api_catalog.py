"""Images, thumbnails, folders, jobs and metadata over HTTP; searches while a folder indexes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from imagegen import make_catalog


def _id_of(server, path) -> int:
    answer = server.call("POST", "/api/v1/search", files=[("image", "q", path.read_bytes())], fields={"k": 1})
    return answer.json()["results"][0]["id"]


def _wait_job(server, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = server.call("GET", f"/api/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_an_image_record_its_thumbnail_with_etag_and_similar_images(shop):
    server, chairs, lamps, root = shop
    image_id = _id_of(server, chairs[2])
    record = server.call("GET", f"/api/v1/images/{image_id}").json()
    assert record["path"] == str(chairs[2]) and record["width"] == 320 and record["format"] == "JPEG"

    thumb = server.call("GET", f"/api/v1/images/{image_id}/thumbnail")
    assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.body[:3] == b"\xff\xd8\xff" and thumb.headers["etag"]
    again = server.call(
        "GET", f"/api/v1/images/{image_id}/thumbnail", headers={"If-None-Match": thumb.headers["etag"]}
    )
    assert again.status == 304 and again.body == b""

    similar = server.call("GET", f"/api/v1/images/{image_id}/similar?k=3").json()
    assert similar["results"][0]["id"] == image_id and len(similar["results"]) == 3
    assert server.call("GET", f"/api/v1/images/{image_id}/similar?k=0").status == 422


def test_a_product_sheet_upload_goes_through_the_importer(shop):
    server, chairs, lamps, root = shop
    sheet = "image,sku,title,price,tags\n" + "\n".join(
        f"{p.name},CH-{i},Oak chair {i},{100 + i},oak" for i, p in enumerate(chairs[:3])
    ) + "\nno-such-file.jpg,X-1,Ghost,1,\n"  # fmt: skip
    answer = server.call("POST", "/api/v1/metadata", files=[("file", "products.csv", sheet.encode())])
    assert answer.status == 200, answer.body
    report = answer.json()
    assert (report["rows"], report["images_updated"], report["source"]) == (4, 3, "products.csv")
    assert report["unmatched"] == [{"line": 5, "image": "no-such-file.jpg"}]
    record = server.call("GET", f"/api/v1/images/{_id_of(server, chairs[1])}").json()
    assert (record["sku"], record["title"], record["price"], record["tags"]) == (
        "CH-1",
        "Oak chair 1",
        101.0,
        ["oak"],
    )
    found = server.call(
        "POST", "/api/v1/search", json_body={"filters": {"where": {"sku": "CH-2"}}, "k": 5}
    ).json()
    assert [r["sku"] for r in found["results"]] == ["CH-2"]
    raw = server.call("POST", "/api/v1/metadata", data=b'[{"image": "nothing.png", "sku": "Z"}]',
                      headers={"Content-Type": "application/json"})  # fmt: skip
    assert raw.status == 200 and raw.json()["unmatched"]
    pdf = server.call("POST", "/api/v1/metadata", files=[("file", "sheet.pdf", b"%PDF-1.4")])
    assert pdf.status == 415


def test_searches_answer_while_a_folder_is_indexed_then_it_can_be_removed(shop):
    server, chairs, lamps, root = shop
    more = make_catalog(root / "catalog" / "more", 60, start_seed=100)
    answer = server.call("POST", "/api/v1/folders", json_body={"path": str(root / "catalog" / "more")})
    assert answer.status == 202, answer.body
    job_id = answer.json()["job"]
    assert answer.headers["location"] == f"/api/v1/jobs/{job_id}"

    def one_search(i: int) -> bool:
        if i % 2:
            return (
                server.call("POST", "/api/v1/search", json_body={"text": f"chair {i}", "k": 5}).status == 200
            )
        answer = server.call("POST", "/api/v1/search", files=[("image", "q.jpg", chairs[i % 8].read_bytes())])
        # Batched with others or not, each upload finds its own file first.
        return answer.status == 200 and answer.json()["results"][0]["path"] == str(chairs[i % 8])

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(one_search, range(48)))
        seen = server.call("GET", f"/api/v1/jobs/{job_id}").json()
    assert answered == [True] * 48
    assert seen["state"] in ("queued", "running", "done")
    job = _wait_job(server, job_id)
    assert job["state"] == "done" and job["report"]["added"] == 60 and job["report"]["skipped"] == 0
    assert job["folder"] == str(root / "catalog" / "more")
    found = server.call("POST", "/api/v1/search", files=[("image", "q.jpg", more[7].read_bytes())]).json()
    assert found["results"][0]["path"] == str(more[7])

    removed = server.call("DELETE", f"/api/v1/folders?path={root / 'catalog' / 'more'}")
    assert removed.status == 200 and removed.json() == {"removed": 60}
    assert server.call("GET", "/api/v1/status").json()["images"] == 14
    missing = server.call("POST", "/api/v1/folders", json_body={"path": str(root / "no-such-folder")})
    assert (missing.status, missing.error_code) == (404, "folder_not_found")
    assert server.call("DELETE", f"/api/v1/folders?path={root / 'no-such-folder'}").status == 404


def test_a_folder_added_with_watch_stays_indexed_while_the_server_runs(shop):
    server, chairs, lamps, root = shop
    folder = root / "catalog" / "watched"
    make_catalog(folder, 2, start_seed=300)
    answer = server.call("POST", "/api/v1/folders", json_body={"path": str(folder), "watch": True})
    assert _wait_job(server, answer.json()["job"])["report"]["added"] == 2
    listed = {f["path"]: f for f in server.call("GET", "/api/v1/status").json()["folders"]}
    assert listed[str(folder)]["watched"] is True

    (new,) = make_catalog(folder, 1, start_seed=333)  # written while the server runs
    new = new.rename(folder / "new-arrival.jpg")
    deadline = time.monotonic() + 120  # a safety net: the watcher indexes it within seconds
    found = None
    while time.monotonic() < deadline:
        found = server.call(
            "POST", "/api/v1/search", files=[("image", "q.jpg", new.read_bytes())], fields={"k": 1}
        )
        if found.json()["results"][0]["path"] == str(new):
            break
        time.sleep(0.3)
    assert found.json()["results"][0]["path"] == str(new)
    assert server.call("DELETE", f"/api/v1/folders?path={folder}").json() == {"removed": 3}
