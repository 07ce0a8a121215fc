"""The soak (long run only): for VF_SOAK_S seconds (default 600) the folder watcher keeps a
watched folder indexed while files keep arriving in it, and searches, CSV exports and tag edits
run from threads of the watcher's library and of a second Library on the same data folder (as
another process would). Nothing is lost (every file on disk ends indexed, every tag added is
kept), no "database is locked" (or any other error) reaches anyone or the log, and the search
latency is reported (p50, p99, max).

    VF_RELIABILITY_LONG=1 VF_SOAK_S=60 pytest tests/reliability/test_soak.py -s
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time

import pytest
from imagegen import make_catalog, write_image
from rel_harness import (
    Workers,
    assert_each_finds_its_files,
    assert_index_matches_catalog,
    check_catalog_file,
    files_under,
    rng_for,
)
from searching import search_image
from watchutil import FAST_WATCH
from watchutil import wait_until as wait_for

from visualfinder.ingest.watcher import Watcher
from visualfinder.library.facade import open_library

SOAK_S = float(os.environ.get("VF_SOAK_S", "600"))


class _LockedLog(logging.Handler):
    """Every log record that mentions a locked database, from any thread or library."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + (
            self.formatter.formatException(record.exc_info) if record.exc_info else ""
        )
        if "locked" in text.lower():
            self.records.append(text)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.mark.reliability_long
def test_the_watcher_soaks_with_arrivals_searches_exports_and_tag_edits(settings, tmp_path, data_dir):
    rng = rng_for("soak")
    settings = settings.replace(**FAST_WATCH)
    locked = _LockedLog()
    locked.setFormatter(logging.Formatter())
    logging.getLogger().addHandler(locked)
    library, other = open_library(settings), open_library(settings)
    root = tmp_path / "catalog"
    stable = make_catalog(root / "stable", 16)  # never touched: each must always find itself
    library.index([root], watched=True)
    stable_set = {str(p) for p in stable}
    watcher = Watcher(library)
    workers = Workers()
    latencies: list[float] = []
    tags_added: dict[str, set[str]] = {}
    tags_lock = threading.Lock()
    arrived = 0
    try:
        watcher.start()
        assert watcher.wait_idle(60), watcher.message

        def search(lib):
            def action():
                query = rng.choice(stable)
                started = time.perf_counter()
                results = search_image(lib, query, k=10)
                latencies.append(time.perf_counter() - started)
                assert results[0].path == str(query) and results[0].score > 0.999
                assert all(r.path.startswith(str(root)) for r in results)

            return action

        def export(lib, name):
            def action():
                results = search_image(lib, rng.choice(stable), k=40)
                out = lib.export_csv(results, tmp_path / f"{name}.csv")
                with open(out, newline="", encoding="utf-8") as fh:
                    assert len(list(csv.reader(fh))) == len(results) + 1

            return action

        def tag(lib):
            def action():
                image, label = rng.choice(stable), f"t{rng.randrange(6)}"
                lib.products.add_tags(image, [label])
                with tags_lock:
                    tags_added.setdefault(str(image), set()).add(label)

            return action

        workers.repeat("search", search(library))
        workers.repeat("search-other", search(other))
        workers.repeat("export", export(library, "export"))
        workers.repeat("export-other", export(other, "export-other"))
        workers.repeat("tags", tag(library))
        workers.repeat("tags-other", tag(other))
        # Files keep arriving: written in place (the stable-size rule), or written elsewhere and
        # moved in (one event), into new subfolders now and then.
        deadline = time.monotonic() + SOAK_S
        staging = tmp_path / "staging"
        while time.monotonic() < deadline and not workers.errors:
            shelf = root / "arrivals" / f"shelf-{arrived // 50}"
            name = f"item_{arrived:06d}.jpg"
            if rng.random() < 0.5:
                write_image(shelf / name, 10_000 + arrived, (96, 72))
            else:
                write_image(staging / name, 10_000 + arrived, (96, 72))
                shelf.mkdir(parents=True, exist_ok=True)
                os.rename(staging / name, shelf / name)
            arrived += 1
            time.sleep(rng.uniform(0.02, 0.3))

        def caught_up() -> bool:
            rows = library.catalog.stat_rows_under(str(root))
            return set(rows) == files_under(root) and all(r.status == "ok" for r in rows.values())

        assert wait_for(caught_up, timeout=300) and watcher.wait_idle(120), watcher.message
    finally:
        workers.finish()
        assert watcher.stop(60)
        logging.getLogger().removeHandler(locked)
    try:
        assert workers.errors == [], workers.errors[0]
        assert locked.records == [], locked.records[:3]
        for image, labels in tags_added.items():
            assert labels <= set(library.catalog.tags_of(library.catalog.image_id(image))), image
        assert_each_finds_its_files((library, other), sorted(files_under(root)), rng)
        assert_index_matches_catalog(library)
    finally:
        library.close()
        other.close()
    snap = check_catalog_file(data_dir, None)
    assert set(snap.rows) == files_under(root) and len(snap.rows) == len(stable_set) + arrived
    ms = [s * 1000 for s in latencies]
    print(f"soak {SOAK_S:.0f}s: {arrived} files arrived, all indexed; {dict(workers.counts)}; search latency "
          f"p50 {_percentile(ms, 0.5):.1f} ms, p99 {_percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms "
          f"over {len(ms)} searches")  # fmt: skip
