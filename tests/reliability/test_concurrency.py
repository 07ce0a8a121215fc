"""Indexing (a run, and the folder watcher) while searches, exports, status and tag edits run from
other threads and from a second Library on the same data folder, as another process would: no
"database is locked" or other error reaches anyone, and every answer is consistent with some
committed state of the catalog.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

from imagegen import make_catalog, write_image
from rel_harness import (
    Workers,
    assert_each_finds_its_files,
    assert_index_matches_catalog,
    check_catalog_file,
    files_under,
    rng_for,
    scaled,
)
from searching import search_image
from watchutil import FAST_WATCH
from watchutil import wait_until as wait_for

from visualfinder.ingest.watcher import Watcher
from visualfinder.library.facade import open_library
from visualfinder.products.export import COLUMNS


def _check_results(results, files: set[str], query: Path | None, indexed_before: set[str]) -> None:
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len({r.id for r in results}) == len(results)
    for r in results:
        assert r.path in files, r.path  # every id the index returns resolves to a real catalog row
    if query is not None and str(query) in indexed_before:
        assert results[0].path == str(query) and results[0].score > 0.999


def test_searches_exports_and_edits_during_indexing_stay_consistent(library, reopen, tmp_path):
    rng = rng_for("concurrency")
    root = tmp_path / "catalog"
    first = make_catalog(root, 24)
    library.index([root])
    more = make_catalog(root, 100, start_seed=500)
    files = {str(p) for p in first + more}
    indexed_before = {str(p) for p in first}
    other = reopen()  # a second Library on the same folder: another process's view
    workers = Workers()

    def search(lib):
        def action():
            query = rng.choice(first + more)
            _check_results(search_image(lib, query, k=8), files, query, indexed_before)

        return action

    def export():
        results = search_image(library, first[0], k=40)
        out = library.export_csv(results, tmp_path / f"export-{threading.get_ident()}.csv")
        with open(out, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == COLUMNS and len(rows) == len(results) + 1
        assert [row[COLUMNS.index("path")] for row in rows[1:]] == [r.path for r in results]

    def tag():
        image = rng.choice(first)
        library.products.add_tags(image, [f"tag-{rng.randrange(5)}"])
        other.products.remove_tags(image, [f"tag-{rng.randrange(5)}"])

    def status():
        for lib in (library, other):
            s = lib.status()
            assert s.stats.images <= len(files) and s.stats.errors == 0

    workers.repeat("search", search(library))
    workers.repeat("search-other", search(other))
    workers.repeat("export", export)
    workers.repeat("tags", tag)
    workers.repeat("status", status)
    started = time.monotonic()
    report = library.index()
    seconds = time.monotonic() - started
    time.sleep(0.3)  # let every worker see the finished state at least once
    workers.finish()
    assert workers.errors == [], workers.errors[0]
    assert report.added == len(more) and report.errors == []
    assert min(workers.counts[n] for n in ("search", "search-other", "export", "tags", "status")) > 0
    for lib in (library, other):
        for query in rng.sample(first + more, 12):
            assert search_image(lib, query, k=1)[0].path == str(query)
    assert_index_matches_catalog(library)
    print(f"indexed {len(more)} images in {seconds:.1f}s alongside {dict(workers.counts)}")


def test_the_watcher_indexes_changes_while_searches_and_exports_run(settings, tmp_path, data_dir):
    rng = rng_for("concurrency-watcher")
    settings = settings.replace(**FAST_WATCH)
    library, other = open_library(settings), open_library(settings)
    root = tmp_path / "catalog"
    stable = make_catalog(root / "stable", 16)  # never touched: each must always find itself
    churn = make_catalog(root / "churn", 24, start_seed=100)
    library.index([root], watched=True)
    ever = {str(p) for p in stable + churn}
    stable_set = {str(p) for p in stable}
    watcher = Watcher(library)
    workers = Workers()
    try:
        watcher.start()
        assert watcher.wait_idle(30), watcher.message

        def search(lib):
            def action():
                query = rng.choice(stable)
                _check_results(search_image(lib, query, k=8), ever, query, stable_set)

            return action

        def export():
            results = search_image(other, rng.choice(stable), k=30)
            out = other.export_csv(results, tmp_path / "watch-export.csv")
            with open(out, newline="", encoding="utf-8") as fh:
                assert len(list(csv.reader(fh))) == len(results) + 1

        def tag():
            other.products.add_tags(rng.choice(stable), [f"t{rng.randrange(3)}"])

        workers.repeat("search", search(library))
        workers.repeat("search-other", search(other))
        workers.repeat("export", export)
        workers.repeat("tags", tag)
        # The user's changes, in bursts: new files, renames, replaced content, deletions.
        seed = 1000
        for _ in range(scaled(6, 40)):
            for _new in range(20):
                path = write_image(root / "churn" / f"new_{seed}.jpg", seed, (96, 72))
                ever.add(str(path))
                seed += 1
            victims = sorted(files_under(root / "churn"))
            for victim in rng.sample(victims, 3):
                target = f"{victim}.renamed.jpg"
                os.rename(victim, target)
                ever.add(target)
            for victim in rng.sample(sorted(files_under(root / "churn")), 2):
                write_image(Path(victim), seed, (96, 72))
                seed += 1
            os.remove(rng.choice(sorted(files_under(root / "churn"))))
            time.sleep(rng.uniform(0.05, 0.4))

        def caught_up() -> bool:
            on_disk = files_under(root)
            rows = library.catalog.stat_rows_under(str(root))
            return set(rows) == on_disk and all(r.status == "ok" for r in rows.values())

        assert wait_for(caught_up, timeout=120) and watcher.wait_idle(60), watcher.message
    finally:
        workers.finish()
        assert watcher.stop(30)
    try:
        assert workers.errors == [], workers.errors[0]
        assert min(workers.counts[n] for n in ("search", "search-other", "export", "tags")) > 0
        assert_each_finds_its_files((library, other), sorted(files_under(root)), rng)
        assert_index_matches_catalog(library)
    finally:
        library.close()
        other.close()
    snap = check_catalog_file(data_dir, ever)
    assert set(snap.rows) == files_under(root)
    print(f"the watcher indexed {len(snap.rows)} files alongside {dict(workers.counts)}")


def test_models_built_at_once_in_threads_get_the_weights_their_seed_gives(monkeypatch):
    """Found by the kill trials: a vf-tiny built while another model was being built (the app's
    workers, a model switch) got other random weights than in any other process, so files indexed
    in that process matched nothing indexed elsewhere."""
    from PIL import Image

    from visualfinder.models import embedder as embedder_module
    from visualfinder.models.embedder import Embedder

    picture = Image.new("RGB", (64, 64), (200, 120, 40))
    names = ["vf-tiny", "vf-tiny-b"]

    def vector(name: str):
        return Embedder(name, "none", "cpu").embed_images([picture])[0]

    monkeypatch.setattr(embedder_module, "_loaded", {})  # build every model afresh, not from the cache
    alone = {name: vector(name) for name in names}
    for _ in range(scaled(1, 10)):
        monkeypatch.setattr(embedder_module, "_loaded", {})
        start = threading.Barrier(4)
        got: list[tuple[str, object]] = []

        def build(name: str, start=start, got=got) -> None:
            start.wait()
            got.append((name, vector(name)))

        threads = [threading.Thread(target=build, args=(names[i % 2],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(got) == 4
        for name, vec in got:
            assert float(vec @ alone[name]) > 0.9999, name
