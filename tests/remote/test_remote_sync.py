"""Sync to a real OpenSearch-compatible server (osmem): index creation, the outbox, retries, failures."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from imagegen import make_catalog, write_image
from remote_helpers import remote_docs

from visualfinder.catalog.outbox import Outbox
from visualfinder.errors import RemoteMismatchError, RemoteUnavailableError
from visualfinder.jobs import Progress
from visualfinder.remote.mapping import RemoteSpec, index_body
from visualfinder.remote.opensearch import RetryPolicy


def small_catalog(root, count, start_seed=0):
    """Small pictures: what matters here is the number of rows, not decoding time."""
    return [
        write_image(root / f"p_{start_seed + i:04d}.png", start_seed + i, size=(48, 40)) for i in range(count)
    ]


def test_first_sync_creates_the_index_with_the_library_mapping(
    tmp_path, library, synced, osmem_clone, os_client
):
    make_catalog(tmp_path / "chairs", 6)
    library.index([tmp_path / "chairs"])
    library.close()
    lib = synced(osmem_clone.url)

    report = lib.remote.sync()

    assert report.created_index and report.full and report.sent == 6 and report.pending == 0
    stored = os_client.indices.get(index="visualfinder")["visualfinder"]
    assert stored["settings"]["index"]["knn"] == "true"
    mapping = stored["mappings"]
    vector = mapping["properties"]["vector"]
    assert vector["type"] == "knn_vector" and vector["dimension"] == lib.embedder.dim
    # osmem reports OpenSearch 3.x, where faiss does cosinesimil (nmslib is deprecated there).
    assert vector["method"] == {"name": "hnsw", "space_type": "cosinesimil", "engine": "faiss",
                                "parameters": {"m": 16, "ef_construction": 128}}  # fmt: skip
    assert mapping["properties"]["tags"] == {"type": "keyword"}
    assert mapping["properties"]["mtime"]["type"] == "date"
    assert mapping["_meta"]["visualfinder"]["model_key"] == lib.model_key
    docs = remote_docs(os_client)
    assert sorted(docs) == sorted(
        lib.catalog.doc_id(i) for i in lib.catalog.embedded_ids(lib.model_key).tolist()
    )
    doc = next(iter(docs.values()))
    local = lib.catalog.embedding_of(doc["image_id"], lib.model_key)
    # The very float16 values of the catalog: remote scores are those of the local index.
    assert np.array_equal(np.asarray(doc["vector"], np.float32).astype(np.float16), local.astype(np.float16))
    assert doc["path"].startswith(str(tmp_path / "chairs")) and doc["folder"] == str(tmp_path / "chairs")
    assert doc["library_id"] == lib.catalog.library_id and doc["format"] == "JPEG"


def test_a_cluster_older_than_2_19_gets_the_lucene_engine_for_cosine(library, synced, proxy, os_client):
    proxy.script.version = "2.11.1"  # faiss learned cosinesimil in 2.19
    library.close()
    synced(proxy.url).remote.sync()
    method = os_client.indices.get_mapping(index="visualfinder")["visualfinder"]["mappings"]["properties"][
        "vector"
    ]
    assert method["method"]["engine"] == "lucene" and method["method"]["space_type"] == "cosinesimil"


def test_the_outbox_stays_empty_until_sync_is_enabled(tmp_path, library, synced, osmem_clone):
    make_catalog(tmp_path / "c", 3)
    library.index([tmp_path / "c"])
    assert not library.catalog.outbox_enabled and library.catalog.stats(library.model_key).outbox_pending == 0
    library.close()
    lib = synced(osmem_clone.url)
    lib.remote.sync()
    assert lib.catalog.outbox_enabled
    write_image(tmp_path / "c" / "new.jpg", 50)
    lib.index()
    assert lib.remote.pending() == 1


def test_200_images_then_deletes_moves_and_edits_converge(tmp_path, library, synced, osmem_clone, os_client):
    root = tmp_path / "catalog"
    files = small_catalog(root, 200)
    library.index([root])
    library.close()
    lib = synced(osmem_clone.url, remote_bulk_max_bytes=60_000)

    first = lib.remote.sync()
    assert first.sent == 200 and first.requests > 1 and lib.remote.pending() == 0
    os_client.indices.refresh(index="visualfinder")
    assert os_client.count(index="visualfinder")["count"] == 200

    for path in files[:3]:  # deleted
        path.unlink()
    (root / "moved").mkdir()
    moved = root / "moved" / files[3].name
    shutil.move(files[3], moved)
    write_image(files[4], 999, size=(48, 40))  # same path, new picture
    lib.index()
    lib.products.add_tags(files[5], ["Oak", "chair"])
    assert lib.remote.pending() == 6

    report = lib.remote.sync()

    assert report.sent == 3 and report.deleted == 3 and report.pending == 0
    docs = remote_docs(os_client)
    local_ids = lib.catalog.embedded_ids(lib.model_key).tolist()
    assert sorted(docs) == sorted(lib.catalog.doc_id(i) for i in local_ids) and len(docs) == 197
    by_path = {d["path"]: d for d in docs.values()}
    assert str(moved) in by_path and str(files[3]) not in by_path
    assert by_path[str(files[5])]["tags"] == ["chair", "oak"]
    updated = by_path[str(files[4])]
    assert np.allclose(
        updated["vector"], lib.catalog.embedding_of(updated["image_id"], lib.model_key), atol=1e-5
    )
    assert lib.catalog.stats(lib.model_key).outbox_pending == 0


def test_bulk_requests_are_sized_by_bytes(tmp_path, library, synced, proxy):
    make_catalog(tmp_path / "c", 30)
    library.index([tmp_path / "c"])
    library.close()
    lib = synced(proxy.url, remote_bulk_max_bytes=8_000)

    report = lib.remote.sync()

    sizes = [len(r.body) for r in proxy.bulk_requests()]
    assert report.sent == 30 and len(sizes) == report.requests > 3
    assert max(sizes) <= 8_000 and sum(sizes) == report.bytes


def test_a_mismatched_remote_index_is_reported_and_never_overwritten(
    tmp_path, library, synced, osmem_clone, os_client
):
    make_catalog(tmp_path / "c", 4)
    library.index([tmp_path / "c"])
    library.close()
    other = RemoteSpec(dimension=32, metric="cosine", model_key="ViT-other/x")
    os_client.indices.create(index="visualfinder", body=index_body(other))
    os_client.index(index="visualfinder", id="theirs", body={"vector": [0.1] * 32}, refresh=True)
    lib = synced(osmem_clone.url)

    with pytest.raises(RemoteMismatchError, match=r"32-dimension vectors .*--recreate"):
        lib.remote.sync()
    assert os_client.count(index="visualfinder")["count"] == 1
    assert not lib.catalog.outbox_enabled

    report = lib.remote.sync(recreate=True)
    assert report.created_index and report.sent == 4
    docs = remote_docs(os_client)
    assert "theirs" not in docs and len(docs) == 4


def test_an_index_of_another_metric_or_model_is_refused(tmp_path, library, synced, osmem_clone, os_client):
    library.close()
    lib = synced(osmem_clone.url, remote_index="l2-index")
    os_client.indices.create(
        index="l2-index", body=index_body(RemoteSpec(lib.embedder.dim, "l2", lib.model_key))
    )
    with pytest.raises(RemoteMismatchError, match="compares vectors by l2"):
        lib.remote.sync()
    lib2 = synced(osmem_clone.url, remote_index="model-index")
    os_client.indices.create(
        index="model-index", body=index_body(RemoteSpec(lib.embedder.dim, "cosine", "RN50/x"))
    )
    with pytest.raises(RemoteMismatchError, match="vectors of model RN50/x"):
        lib2.remote.sync()


def test_rejected_documents_are_reported_and_not_retried_forever(tmp_path, library, synced, proxy, os_client):
    files = make_catalog(tmp_path / "c", 5)
    library.index([tmp_path / "c"])
    library.products.add_tags(files[2], ["oak"])
    library.close()
    lib = synced(proxy.url)
    # An index someone made with `tags` as numbers: a tag like "oak" cannot go in.
    body = index_body(lib.remote.spec())
    body["mappings"]["properties"]["tags"] = {"type": "long"}
    os_client.indices.create(index="visualfinder", body=body)

    report = lib.remote.sync()

    assert report.sent == 4 and len(report.rejected) == 1
    assert report.rejected[0].path == str(files[2]) and "mapper_parsing_exception" in report.rejected[0].error
    status = lib.remote.status()
    assert status.rejected_count == 1 and status.pending == 0
    sent_before = len(proxy.bulk_requests())
    again = lib.remote.sync()
    assert again.sent == 0 and not again.rejected and len(proxy.bulk_requests()) == sent_before

    lib.products.remove_tags(files[2], ["oak"])  # the image changes: its new document goes out
    fixed = lib.remote.sync()
    assert fixed.sent == 1 and lib.remote.status().rejected_count == 0
    assert len(remote_docs(os_client)) == 5


def test_429_responses_are_retried_with_backoff_until_accepted(tmp_path, library, synced, proxy, os_client):
    make_catalog(tmp_path / "c", 12)
    library.index([tmp_path / "c"])
    library.close()
    lib = synced(proxy.url, remote_backoff_s=0.2, remote_backoff_max_s=1.0, remote_max_retries=4)
    proxy.script.bulk_statuses = [429, 503]  # two whole requests refused...
    proxy.script.item_429_rounds = 1  # ...then half the documents of the next one

    report = lib.remote.sync()

    assert report.sent == 12 and report.pending == 0 and not report.rejected
    bulks = proxy.bulk_requests()
    assert len(bulks) == 4
    # The retry after the item-level 429s carries only the refused half.
    assert bulks[3].body.count(b'"index"') == 6
    # Backoff with equal jitter: at least half of each step (0.2 s, 0.4 s; then 0.2 s for the items).
    assert bulks[3].at - bulks[0].at >= 0.1 + 0.2 + 0.1 - 0.05
    assert len(remote_docs(os_client)) == 12


def test_a_stopped_server_keeps_every_change_and_converges_when_back(
    tmp_path, library, synced, proxy, os_client
):
    make_catalog(tmp_path / "c", 40)
    library.index([tmp_path / "c"])
    library.close()
    lib = synced(proxy.url, remote_bulk_max_bytes=6_000)

    batches = []

    def stop_after_two_batches(p: Progress) -> None:
        if p.phase == "syncing" and p.done:
            batches.append(p.done)
            if len(batches) == 2:
                proxy.down()

    with pytest.raises(RemoteUnavailableError, match="connection refused"):
        lib.remote.sync(progress=stop_after_two_batches)

    sent = batches[-1]
    assert 0 < sent < 40
    assert lib.remote.pending() == 40 - sent
    assert len(remote_docs(os_client)) == sent
    assert "connection refused" in lib.remote.status().last_error

    proxy.up()
    report = lib.remote.sync()

    assert report.sent == 40 - sent and report.pending == 0 and not report.full
    docs = remote_docs(os_client)
    assert sorted(docs) == sorted(
        lib.catalog.doc_id(i) for i in lib.catalog.embedded_ids(lib.model_key).tolist()
    )
    assert os_client.count(index="visualfinder")["count"] == 40
    assert lib.catalog.stats(lib.model_key).outbox_pending == 0


def test_a_lost_remote_index_is_pushed_again_in_full(tmp_path, library, synced, osmem_clone, os_client):
    make_catalog(tmp_path / "c", 5)
    library.index([tmp_path / "c"])
    library.close()
    lib = synced(osmem_clone.url)
    lib.remote.sync()
    os_client.indices.delete(index="visualfinder")

    report = lib.remote.sync()  # a new index (new uuid): everything goes again, without being asked

    assert report.full and report.created_index and report.sent == 5
    assert len(remote_docs(os_client)) == 5


def test_full_sync_restores_missing_documents_and_removes_stale_ones(
    tmp_path, library, synced, osmem_clone, os_client
):
    make_catalog(tmp_path / "c", 5)
    library.index([tmp_path / "c"])
    library.close()
    lib = synced(osmem_clone.url)
    lib.remote.sync()
    docs = remote_docs(os_client)
    lost = sorted(docs)[0]
    os_client.delete(index="visualfinder", id=lost, refresh=True)
    stale = dict(docs[sorted(docs)[1]], image_id=99_999)
    stale_id = lib.catalog.doc_id(99_999)
    os_client.index(index="visualfinder", id=stale_id, body=stale, refresh=True)
    other_library = dict(stale, library_id="someone-else")
    os_client.index(index="visualfinder", id="someone-else-1", body=other_library, refresh=True)

    assert lib.remote.sync().sent == 0  # nothing changed locally: a plain sync sends nothing

    report = lib.remote.sync(full=True)

    assert report.full and report.sent == 5 and report.deleted == 1
    after = remote_docs(os_client)
    assert lost in after and stale_id not in after and "someone-else-1" in after and len(after) == 6


def test_outbox_merges_changes_per_document_and_keeps_rejections_aside(library, tmp_path):
    make_catalog(tmp_path / "c", 2)
    library.catalog.enable_outbox()
    library.index([tmp_path / "c"])
    image_id = int(library.catalog.embedded_ids(library.model_key)[0])
    library.products.add_tags(image_id, ["a"])
    library.products.add_tags(image_id, ["b"])
    outbox = Outbox(library.catalog)

    entries = outbox.next_batch(0, 100)

    assert len(entries) == 2
    entry = next(e for e in entries if e.image_id == image_id)
    assert (
        entry.op == "upsert" and len(entry.row_ids) == 3 and entry.doc_id == library.catalog.doc_id(image_id)
    )
    outbox.record_failures([(entry, "400 mapper_parsing_exception: no", True)])
    assert outbox.pending() == 1 and outbox.rejected_count() == 1
    assert [e.image_id for e in outbox.next_batch(0, 100)] != [image_id]
    library.products.add_tags(image_id, ["c"])
    newer = [e for e in outbox.next_batch(0, 100) if e.image_id == image_id]
    outbox.acknowledge(newer)  # the newer document went through: the old rejection is moot
    assert outbox.rejected_count() == 0


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    policy = RetryPolicy(max_retries=8, base_s=0.5, max_s=4.0)
    for attempt, step in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 100  # jitter: retries of many clients do not line up
