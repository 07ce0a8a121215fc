"""Remote search: request bodies as the OpenSearch k-NN docs define them, filters that mean the
same on the cluster as locally, the planner's rule, and results shaped like local ones."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest
from imagegen import make_catalog, write_image
from remote_helpers import FAST_REMOTE, documented_score

from visualfinder.catalog.filters import FieldCondition, Filters
from visualfinder.cli.main import main
from visualfinder.config import Settings, update_settings_file
from visualfinder.library.facade import open_library
from visualfinder.remote.mapping import RemoteSpec, index_body
from visualfinder.remote.query import distance_from_score, filter_clauses, knn_body, script_score_body
from visualfinder.search.vector_index import exact_distances

QUERY = np.array([0.6, 0.8, 0.0], dtype=np.float32)


def test_knn_body_has_the_documented_shape_with_the_filter_inside():
    # docs: "Efficient k-NN filtering" - {"query": {"knn": {FIELD: {"vector": [...], "k": K, "filter": {...}}}}}
    body = knn_body(QUERY, 5, [{"term": {"tags": "oak"}}])
    assert body == {
        "size": 5,
        "query": {"knn": {"vector": {
            "vector": [pytest.approx(0.6), pytest.approx(0.8), 0.0], "k": 5,
            "filter": {"bool": {"filter": [{"term": {"tags": "oak"}}]}},
        }}},
        "_source": {"excludes": ["vector"]},
    }  # fmt: skip
    assert "filter" not in knn_body(QUERY, 5, [])["query"]["knn"]["vector"]
    json.dumps(body)  # plain JSON types only


def test_script_score_body_has_the_documented_shape():
    # docs: "Exact k-NN with scoring script" - script {"source": "knn_score", "lang": "knn",
    # "params": {"field", "query_value", "space_type"}} over the (filtered) query
    body = script_score_body(QUERY, 3, [{"prefix": {"path": "/a/"}}], "cosinesimil")
    assert body["size"] == 3 and body["_source"] == {"excludes": ["vector"]}
    assert body["query"] == {"script_score": {
        "query": {"bool": {"filter": [{"prefix": {"path": "/a/"}}]}},
        "script": {"source": "knn_score", "lang": "knn", "params": {
            "field": "vector", "query_value": [pytest.approx(0.6), pytest.approx(0.8), 0.0],
            "space_type": "cosinesimil"}},
    }}  # fmt: skip
    assert script_score_body(QUERY, 3, [], "l2")["query"]["script_score"]["query"] == {"match_all": {}}


@pytest.mark.parametrize("metric, space", [("cosine", "cosinesimil"), ("ip", "innerproduct"), ("l2", "l2")])
def test_index_body_has_the_documented_knn_vector_mapping(metric, space):
    body = index_body(RemoteSpec(512, metric, "ViT-B-32/x", engine="lucene", m=24, ef_construction=256))
    assert body["settings"] == {"index": {"knn": True}}
    assert body["mappings"]["properties"]["vector"] == {
        "type": "knn_vector", "dimension": 512,
        "method": {"name": "hnsw", "space_type": space, "engine": "lucene",
                   "parameters": {"m": 24, "ef_construction": 256}},
    }  # fmt: skip


@pytest.mark.parametrize("metric, space", [("cosine", "cosinesimil"), ("ip", "innerproduct"), ("l2", "l2")])
@pytest.mark.parametrize("exact", [False, True])
def test_remote_scores_convert_back_to_the_local_distance(metric, space, exact):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(50, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[0] * 0.6 + vectors[1] * 0.4
    query /= np.linalg.norm(query)
    local = exact_distances(metric, query, vectors)
    remote = [distance_from_score(metric, documented_score(space, query.astype(np.float64), v, exact), exact)
              for v in vectors.astype(np.float64)]  # fmt: skip
    assert np.allclose(remote, local, atol=1e-5)


@pytest.fixture
def shop(tmp_path, data_dir, library, proxy):
    """A library of chairs (jpg) and lamps (png) with tags and product metadata, synced to osmem."""
    chairs = make_catalog(tmp_path / "shop" / "chairs", 8)
    lamps = make_catalog(tmp_path / "shop" / "lamps", 6, start_seed=30, ext="png")
    write_image(tmp_path / "shop" / "chairs-old" / "c.jpg", 70)  # a sibling folder with a shared prefix
    library.index([tmp_path / "shop"])
    library.products.add_tags(chairs[0], ["oak", "red"])
    library.products.add_tags(chairs[1], ["oak"])
    library.products.add_tags(lamps[0], ["red"])
    with library.catalog.transaction() as conn:  # product metadata, as an import would set it
        for i, path in enumerate(chairs[:4]):
            image_id = library.catalog.id_for_path(str(path))
            conn.execute("INSERT INTO image_meta(image_id, sku, title, price) VALUES (?, ?, ?, ?)",
                         (image_id, f"CH-{i}", f"Oak Chair model {i}" if i % 2 else f"Lamp-ish stool {i}", 10.0 + i))  # fmt: skip
    library.close()
    # Saved, so that the CLI (main) uses the same settings.
    update_settings_file(data_dir, remote_url=proxy.url, exact_search_max_candidates=10, **FAST_REMOTE)
    lib = open_library(Settings.load())
    lib.remote.sync()
    proxy.script.knn = True
    yield lib, chairs, lamps, tmp_path / "shop"
    lib.close()


def test_filters_select_the_same_images_on_the_cluster_as_locally(shop, os_client):
    lib, chairs, lamps, root = shop
    os_client.indices.refresh(index="visualfinder")
    cases = [
        Filters(folders=[str(root / "chairs")]),
        Filters(folders=[str(root / "chairs"), str(root / "lamps")]),
        Filters(tags_any=["RED", "nothing"]),
        Filters(tags_all=["oak", "red"]),
        Filters(types=["png"]),
        Filters(types=[".JPG"], tags_all=["oak"]),
        Filters(fields=[FieldCondition("sku", "CH-2")]),
        Filters(fields=[FieldCondition("title", "chair", contains=True)]),
        Filters(fields=[FieldCondition("title", "Oak Chair model 1")]),
        Filters(fields=[FieldCondition("price", "12")]),
        Filters(fields=[FieldCondition("sku", "ch-2"), FieldCondition("price", "5", op=">=")]),
        Filters(fields=[FieldCondition("price", "12", op="<")]),
        Filters(folder_names=["LAMPS"]),
        Filters(
            min_bytes=1,
            max_bytes=10**9,
            modified_after=datetime(2000, 1, 1),
            modified_before=datetime(2100, 1, 1),
        ),
        Filters(modified_after=datetime(2100, 1, 1)),
    ]
    for filters in cases:
        where, params = filters.to_sql()
        local = set(lib.catalog.select_ids(where, params, model_key=lib.model_key).tolist())
        body = {"size": 1000, "query": {"bool": {"filter": filter_clauses(filters)}}, "_source": ["image_id"]}
        hits = os_client.search(index="visualfinder", body=body)["hits"]["hits"]
        remote = {h["_source"]["image_id"] for h in hits}
        assert remote == local, filters
    assert local == set()  # the last case matches nothing, on both sides


def test_remote_search_gives_the_same_results_as_local_search(shop, capsys, caplog):
    lib, chairs, lamps, root = shop
    lib.close()
    capsys.readouterr()
    for args in (["-k", "5"], ["-k", "4", "--folder", str(root / "lamps")]):
        assert main(["search", str(chairs[2]), "--json", *args]) == 0
        local = json.loads(capsys.readouterr().out)
        assert main(["-v", "search", str(chairs[2]), "--json", "--remote", *args]) == 0
        out = capsys.readouterr()
        remote = json.loads(out.out)
        assert [r["path"] for r in remote] == [r["path"] for r in local]
        assert [r["score"] for r in remote] == pytest.approx([r["score"] for r in local], abs=2e-3)
        assert [r["distance"] for r in remote] == pytest.approx([r["distance"] for r in local], abs=2e-3)
        for r, mine in zip(remote, local):
            assert {k: v for k, v in r.items() if k != "doc_id"} == mine | {
                "score": r["score"],
                "distance": r["distance"],
            }
            assert r["doc_id"].endswith(f"-{mine['id']}")
    assert "remote exact search over 6 candidates" in out.err


def test_the_remote_planner_estimates_the_filtered_count_and_picks_knn_or_exact(shop, proxy):
    lib, chairs, lamps, root = shop
    query = lib.catalog.embedding_of(lib.catalog.id_for_path(str(chairs[3])), lib.model_key)
    searcher = lib.remote.searcher()

    def last_search() -> dict:
        return json.loads([r for r in proxy.requests("/_search") if r.body][-1].body)

    results, plan = searcher.search(query, 3)  # 15 documents > exact_max // 8: approximate
    assert (plan.method, plan.where, plan.candidates) == ("hnsw", "remote", 15)
    assert "knn" in last_search()["query"] and results[0].path == str(chairs[3])

    results, plan = searcher.search(query, 3, Filters(folders=[str(root / "lamps")]))  # 6 <= 10: exact
    assert (plan.method, plan.candidates) == ("exact", 6)
    assert last_search()["query"]["script_score"]["script"]["params"]["space_type"] == "cosinesimil"
    count = json.loads(proxy.requests("/_count")[-1].body)
    assert count == {"query": {"bool": {"filter": filter_clauses(Filters(folders=[str(root / "lamps")]))}}}
    assert {r.path for r in results} <= {str(p) for p in lamps}

    results, plan = searcher.search(query, 3, Filters(types=["jpg"]))  # 9 jpg... still <= 10: exact
    assert plan.method == "exact"
    results, plan = searcher.search(query, 3, Filters(folders=[str(root)]))  # 15 > 10: knn with filter
    assert plan.method == "hnsw" and "filter" in last_search()["query"]["knn"]["vector"]
    results, plan = searcher.search(query, 3, exact=True)
    assert plan.method == "exact" and results[0].path == str(chairs[3])
    assert results[0].record.thumb_path  # our own documents show the local thumbnail
