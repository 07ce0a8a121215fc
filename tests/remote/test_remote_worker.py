"""Continuous sync: the background SyncWorker pushes changes as they happen and never holds up
indexing or search, whether the cluster is slow or gone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import tomli_w
from imagegen import make_catalog, write_image
from remote_helpers import FAST_REMOTE, remote_docs
from searching import search_image

from visualfinder.events import SyncStatusChanged
from visualfinder.remote.worker import SyncWorker, start_live_sync


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def test_the_worker_pushes_changes_as_they_happen(tmp_path, synced, osmem_clone, os_client):
    lib = synced(osmem_clone.url)
    states = []
    lib.events.subscribe(lambda e: states.append(e.state) if isinstance(e, SyncStatusChanged) else None)
    worker = SyncWorker(lib).start()
    try:
        files = make_catalog(tmp_path / "c", 5)
        lib.index([tmp_path / "c"])
        assert wait_for(lambda: len(remote_docs(os_client)) == 5)
        lib.products.add_tags(files[0], ["oak"])
        files[1].unlink()
        lib.index()
        assert wait_for(lambda: len(remote_docs(os_client)) == 4 and lib.remote.pending() == 0)
        assert wait_for(lambda: any(d["tags"] == ["oak"] for d in remote_docs(os_client).values()))
    finally:
        worker.stop()
    assert "pushing" in states and "idle" in states and states[-1] == "stopped"
    assert not worker.running


def test_indexing_and_search_never_wait_for_a_slow_cluster(tmp_path, synced, proxy, os_client):
    lib = synced(proxy.url)
    make_catalog(tmp_path / "c", 3)
    lib.index([tmp_path / "c"])
    hold = threading.Event()
    proxy.script.hold = hold  # every request to the cluster now waits until released
    worker = SyncWorker(lib).start()
    try:
        assert proxy.in_flight.wait(10)  # the worker is stuck in a request to the cluster

        write_image(tmp_path / "c" / "new.jpg", 77)
        report = lib.index()
        results = search_image(lib, tmp_path / "c" / "new.jpg", k=2)
        lib.products.add_tags(tmp_path / "c" / "new.jpg", ["lamp"])

        assert report.added == 1 and results[0].path == str(tmp_path / "c" / "new.jpg")
        assert not hold.is_set() and worker.state == "pushing"  # all of that happened while it waited
        hold.set()
        assert wait_for(lambda: lib.remote.pending() == 0 and worker.state == "idle")
        assert len(remote_docs(os_client)) == 4
    finally:
        hold.set()
        worker.stop()


def test_the_worker_waits_out_an_unreachable_cluster_and_catches_up(tmp_path, synced, proxy, os_client):
    lib = synced(proxy.url)
    make_catalog(tmp_path / "c", 2)
    lib.index([tmp_path / "c"])
    lib.remote.sync()
    proxy.down()
    events: list[SyncStatusChanged] = []
    lib.events.subscribe(lambda e: events.append(e) if isinstance(e, SyncStatusChanged) else None)
    worker = SyncWorker(lib, max_retry_s=0.2).start()
    try:
        make_catalog(tmp_path / "c", 2, start_seed=10)
        lib.index()
        assert wait_for(lambda: any(e.state == "offline" and e.pending == 2 for e in events))
        assert "cannot reach OpenSearch" in events[-1].message
        assert lib.remote.pending() == 2  # kept, not lost

        proxy.up()
        assert wait_for(lambda: worker.state == "idle", timeout=30)
        assert len(remote_docs(os_client)) == 4 and lib.remote.pending() == 0
    finally:
        worker.stop()


def test_stop_returns_promptly_while_the_worker_backs_off(synced, proxy):
    proxy.down()
    lib = synced(proxy.url, remote_max_retries=50, remote_backoff_s=60.0, remote_backoff_max_s=60.0)
    worker = SyncWorker(lib).start()
    assert wait_for(lambda: len(proxy.seen) == 0 and worker.state == "pushing")
    time.sleep(0.2)  # inside a 30-60 s backoff pause now (or about to be)
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 20 and not worker.running  # the pause was cut short


def test_live_sync_starts_only_for_a_configured_cluster_with_live_push_on(synced, reopen, osmem_clone):
    assert start_live_sync(reopen()) is None  # no cluster configured
    assert start_live_sync(synced(osmem_clone.url, remote_live_push=False)) is None
    worker = start_live_sync(synced(osmem_clone.url))
    try:
        assert worker is not None and worker.running
    finally:
        worker.stop()


def test_visualfinder_watch_pushes_new_files_to_the_cluster_as_they_arrive(
    tmp_path, data_dir, osmem_clone, os_client
):
    from watchutil import FAST_WATCH, WatchProcess

    catalog = tmp_path / "catalog"
    make_catalog(catalog, 2)
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = {**FAST_WATCH, **FAST_REMOTE, "remote_url": osmem_clone.url}
    (data_dir / "settings.toml").write_text(tomli_w.dumps(settings))
    watcher = WatchProcess(str(catalog), paths=(str(Path(__file__).parent),))
    try:
        watcher.wait_for("stderr", "sync idle: everything is on the cluster")
        assert wait_for(lambda: len(remote_docs(os_client)) == 2)  # the watcher's catch-up went out
        write_image(catalog / "new.jpg", 30)
        watcher.wait_for("stdout", "1 added")
        assert wait_for(lambda: len(remote_docs(os_client)) == 3)
        assert any(doc["file_name"] == "new.jpg" for doc in remote_docs(os_client).values())
        assert watcher.stop() == 0
        assert watcher.lines["stderr"][-1].endswith("sync stopped"), watcher.lines["stderr"]
    finally:
        watcher.kill()
