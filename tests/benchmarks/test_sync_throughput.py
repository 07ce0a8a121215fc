"""Benchmark: sync throughput to osmem for 10k documents, and _bulk request sizes.

    PYTHONPATH=. pytest tests/benchmarks/test_sync_throughput.py -s

A catalog of 10k images with 512-dimension embeddings (ViT-B/32's size; random unit vectors,
no model needed) is pushed with the real Syncer. The baseline, measured in the same run, sends
the same documents pre-serialised with plain `client.bulk` calls of the same size: the
server's and transport's ceiling. The ratio says what reading the outbox, building documents
from the catalog, encoding and acknowledging cost on top.
"""

from __future__ import annotations

import time

import numpy as np
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from visualfinder.catalog.outbox import Outbox
from visualfinder.catalog.store import Catalog, CatalogChanges, ImageWrite
from visualfinder.config import Settings
from visualfinder.remote.documents import bulk_items, pack
from visualfinder.remote.mapping import RemoteSpec, index_body
from visualfinder.remote.opensearch import connect
from visualfinder.remote.sync import Syncer

N_DOCS = 10_000
DIM = 512
MODEL = "bench/model"


def make_catalog(path, n: int) -> Catalog:
    catalog = Catalog(path)
    folder = catalog.add_folder("/bench/catalog")
    rng = np.random.default_rng(0)
    for start in range(0, n, 1000):
        vectors = rng.normal(size=(min(1000, n - start), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        writes = [
            ImageWrite(f"/bench/catalog/sub{(start + i) % 20}/product_{start + i:06d}.jpg", folder.id, 120_000 + i,
                       1_700_000_000_000_000_000 + i, f"hash{start + i}", 800, 600, "JPEG", v, MODEL, None)
            for i, v in enumerate(vectors)
        ]  # fmt: skip
        catalog.apply(CatalogChanges(inserts=writes))
    return catalog


def test_sync_throughput_and_bulk_sizes(tmp_path):
    catalog = make_catalog(tmp_path / "catalog.db", N_DOCS)
    spec = RemoteSpec(DIM, "cosine", MODEL)
    with OsmemServer.start(japanese=False) as server:
        rows = []
        for limit_mb in (5, 10):
            settings = Settings.load(tmp_path / "data", remote_url=server.url, remote_index=f"bench-{limit_mb}",
                                     remote_bulk_max_bytes=limit_mb * 1_000_000, remote_timeout_s=120)  # fmt: skip
            cluster = connect(settings)
            client = OpenSearch(hosts=[server.url], timeout=120)

            # Baseline: the same documents, already encoded, sent by plain client.bulk calls.
            outbox = Outbox(catalog)
            catalog.set_meta("outbox_enabled", "1")
            outbox.enqueue_everything(MODEL)
            started = time.perf_counter()
            items = bulk_items(catalog, outbox.next_batch(0, N_DOCS), f"base-{limit_mb}", MODEL)
            encode_s = time.perf_counter() - started

            client.indices.create(index=f"base-{limit_mb}", body=index_body(spec))
            batches = list(pack(items, settings.remote_bulk_max_bytes, settings.remote_bulk_max_docs))
            started = time.perf_counter()
            for batch in batches:
                response = client.bulk(body=b"".join(i.lines for i in batch))
                assert not response["errors"]
            baseline_s = time.perf_counter() - started
            with catalog.transaction() as conn:
                conn.execute("DELETE FROM outbox")
                conn.execute("DELETE FROM meta WHERE key LIKE 'sync_%' OR key = 'outbox_enabled'")

            # visualfinder: the full path, from the outbox to acknowledged rows.
            syncer = Syncer(catalog, cluster, spec, settings)
            report = syncer.run()
            client.indices.refresh(index=f"bench-{limit_mb}")
            assert report.sent == N_DOCS and report.pending == 0
            assert client.count(index=f"bench-{limit_mb}")["count"] == N_DOCS
            sizes = [sum(len(i.lines) for i in b) for b in batches]
            assert max(sizes) <= settings.remote_bulk_max_bytes
            rows.append((limit_mb, report, baseline_s, encode_s, sizes))
            cluster.close()

    print(f"\nsync of {N_DOCS} documents ({DIM}-d vectors) to osmem")
    print(f"{'limit':>6} {'requests':>8} {'max MB':>7} {'mean MB':>8} {'sync docs/s':>12} "
          f"{'baseline docs/s':>16} {'ratio':>6} {'encode docs/s':>14}")  # fmt: skip
    for limit_mb, report, baseline_s, encode_s, sizes in rows:
        print(f"{limit_mb:>4}MB {report.requests:>8} {max(sizes) / 1e6:>7.2f} {np.mean(sizes) / 1e6:>8.2f} "
              f"{N_DOCS / report.seconds:>12.0f} {N_DOCS / baseline_s:>16.0f} "
              f"{baseline_s / report.seconds:>6.2f} {N_DOCS / encode_s:>14.0f}")  # fmt: skip
