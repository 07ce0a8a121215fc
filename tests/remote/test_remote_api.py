"""`visualfinder serve --remote`: stateless, searching the OpenSearch index alone (osmem behind the
test proxy, which answers the k-NN plugin's queries that osmem lacks)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from imagegen import make_catalog
from remote_helpers import FAST_REMOTE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import ApiServer, write_settings  # noqa: E402

HERE = str(Path(__file__).resolve().parent)


@pytest.fixture
def synced_shop(tmp_path, library, proxy, reopen):
    chairs = make_catalog(tmp_path / "shop" / "chairs", 6)
    lamps = make_catalog(tmp_path / "shop" / "lamps", 4, start_seed=30, ext="png")
    library.index([tmp_path / "shop"])
    library.products.add_tags(chairs[0], ["oak"])
    library.close()
    lib = reopen(remote_url=proxy.url, **FAST_REMOTE)
    lib.remote.sync()
    proxy.script.knn = True
    return chairs, lamps, tmp_path / "shop"


def test_serve_remote_answers_searches_from_the_cluster_with_no_catalog(tmp_path, synced_shop, proxy):
    chairs, lamps, root = synced_shop
    data_dir = tmp_path / "stateless"
    write_settings(data_dir, remote_url=proxy.url, exact_search_max_candidates=6, **FAST_REMOTE)
    server = ApiServer(data_dir, "--remote", extra_paths=(HERE,))
    try:
        status = server.call("GET", "/api/v1/status").json()
        assert status["images"] == 10 and status["remote"]["reachable"] is True
        assert status["server"]["mode"] == "remote" and status["folders"] == []

        found = server.call("POST", "/api/v1/search", files=[("image", "q.jpg", chairs[2].read_bytes())],
                            fields={"k": 3})  # fmt: skip
        assert found.status == 200, found.body
        body = found.json()
        assert body["plan"] == "remote" and body["method"] == "hnsw" and body["candidates"] == 10
        assert body["results"][0]["path"] == str(chairs[2]) and body["results"][0]["score"] > 0.99
        assert body["results"][0]["thumbnail_url"] is None and body["results"][0]["doc_id"]

        narrow = server.call("POST", "/api/v1/search", json_body={
            "text": "a lamp", "k": 10, "filters": {"folder": str(root / "lamps")}}).json()  # fmt: skip
        assert (narrow["method"], narrow["candidates"]) == ("exact", 4)
        assert {r["path"] for r in narrow["results"]} == {str(p) for p in lamps}
        tagged = server.call("POST", "/api/v1/search", json_body={"q": "tag:oak chair", "k": 5}).json()
        assert [r["path"] for r in tagged["results"]] == [str(chairs[0])]

        for path in ("/api/v1/images/1", "/api/v1/images/1/similar", "/api/v1/jobs/1"):
            answer = server.call("GET", path)
            assert (answer.status, answer.error_code) == (404, "no_catalog"), path
        similar = server.call("POST", "/api/v1/search", json_body={"similar_to": 1})
        assert similar.status == 400 and "catalog" in similar.json()["error"]["message"]

        proxy.down()  # the cluster goes away: searches say so, status still answers
        down = server.call("POST", "/api/v1/search", json_body={"text": "chair"})
        assert (down.status, down.error_code) == (503, "remote"), down.body
        status = server.call("GET", "/api/v1/status").json()
        assert status["remote"]["reachable"] is False and status["remote"]["error"]
    finally:
        server.stop()
    assert not (data_dir / "catalog.db").exists()  # stateless: nothing written but its settings
