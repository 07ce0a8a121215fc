"""The HTTP API under a mixed load (long run only): for VF_API_LOAD_S seconds (default 600) a real
`visualfinder serve` on a free loopback port answers text searches, photo uploads, similar,
status, records and thumbnails from several clients at once, while folders are added over the
API (indexed as jobs), checked and removed again, and files keep arriving in a watched folder.
No answer is an error (every status is the one expected, every upload of a catalog file finds
that file first), nothing reaches the server's log as a traceback, and it stops cleanly. The
counts and the latency of each kind (p50, p99, max) are printed.

    VF_RELIABILITY_LONG=1 VF_API_LOAD_S=60 pytest tests/reliability/test_api_mixed_load.py -s
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from imagegen import make_catalog, write_image
from rel_harness import Workers, rng_for
from watchutil import FAST_WATCH

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import ApiServer, index_folders, write_settings  # noqa: E402

LOAD_S = float(os.environ.get("VF_API_LOAD_S", "600"))
STABLE = 24  # never touched: each upload of one must find it first
MAX_ARRIVALS = 400  # files written into the watched folder, at most (a bounded catalog)
MAX_ADDED_FOLDERS = 3  # folders added over the API at once; the oldest is removed beyond it


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Load(Workers):
    """The load's clients: every failure is kept and the client goes on; latencies by kind."""

    def __init__(self) -> None:
        super().__init__(on_error="continue", join_s=300)
        self.latencies: dict[str, list[float]] = defaultdict(list)

    def timed(self, kind: str, call):
        started = time.perf_counter()
        answer = call()
        with self._lock:
            self.latencies[kind].append(time.perf_counter() - started)
        return answer


@pytest.mark.reliability_long
def test_the_api_answers_a_mixed_load_without_errors(tmp_path):
    rng = rng_for("api-mixed-load")
    rng_lock = threading.Lock()
    root = tmp_path / "catalog"
    stable = make_catalog(root / "stable", STABLE)
    watched = root / "watched"
    make_catalog(watched, 2, start_seed=500)
    data_dir = tmp_path / "vf-data"
    write_settings(data_dir, **FAST_WATCH)
    index_folders(data_dir, root / "stable")
    server = ApiServer(data_dir)
    load = _Load()
    added: list[Path] = []  # folders added over the API and not yet removed
    arrivals: list[Path] = []
    counts = defaultdict(int)

    def pick(items):
        with rng_lock:
            return rng.choice(items)

    def expect(kind: str, answer, status: int = 200) -> bool:
        with rng_lock:
            counts[kind] += 1
        if answer.status != status:
            load.fail(f"{kind}: {answer.status} (wanted {status}): {answer.body[:300]!r}")
            return False
        return True

    ids = [
        server.call(
            "POST", "/api/v1/search", files=[("image", "q.jpg", p.read_bytes())], fields={"k": 1}
        ).json()["results"][0]["id"]
        for p in stable
    ]
    assert len(set(ids)) == STABLE

    def text():
        words = f"{pick(['red', 'oak', 'small', 'metal', 'green'])} {pick(['chair', 'lamp', 'table'])}"
        answer = load.timed("text", lambda: server.call(
            "POST", "/api/v1/search", fields={"text": f"{words} {time.monotonic_ns()}", "k": 10}))  # fmt: skip
        if expect("text", answer) and not answer.json()["results"]:
            load.fail("text: no results")

    def upload():
        path = pick(stable)
        answer = load.timed("upload", lambda: server.call(
            "POST", "/api/v1/search", files=[("image", path.name, path.read_bytes())], fields={"k": 5}))  # fmt: skip
        if expect("upload", answer) and answer.json()["results"][0]["path"] != str(path):
            load.fail(f"upload: {path.name} did not find itself first: {answer.json()['results'][:2]}")

    def similar():
        image_id = pick(ids)
        answer = load.timed("similar", lambda: server.call("GET", f"/api/v1/images/{image_id}/similar?k=5"))
        if expect("similar", answer) and answer.json()["results"][0]["id"] != image_id:
            load.fail(f"similar: image {image_id} is not its own best match")

    def status():
        answer = load.timed("status", lambda: server.call("GET", "/api/v1/status"))
        if expect("status", answer) and answer.json()["images"] < STABLE:
            load.fail(f"status: {answer.json()['images']} images")

    def record_and_thumbnail():
        image_id = pick(ids)
        expect("record", load.timed("record", lambda: server.call("GET", f"/api/v1/images/{image_id}")))
        thumb = load.timed("thumbnail", lambda: server.call("GET", f"/api/v1/images/{image_id}/thumbnail"))
        if expect("thumbnail", thumb):
            again = server.call("GET", f"/api/v1/images/{image_id}/thumbnail",
                                headers={"If-None-Match": thumb.headers["etag"]})  # fmt: skip
            expect("thumbnail-304", again, 304)

    def folder_cycle():
        """Add a folder over the API, wait for its job, find one of its files, remove the oldest."""
        n = counts["folder-added"]
        folder = root / "added" / f"batch-{n:03d}"
        files = make_catalog(folder, 6, start_seed=1000 + 10 * n)
        answer = server.call("POST", "/api/v1/folders", json_body={"path": str(folder)})
        if not expect("folder-added", answer, 202):
            return
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = server.call("GET", f"/api/v1/jobs/{answer.json()['job']}").json()
            if job["state"] not in ("queued", "running"):
                break
            load.stop.wait(0.2)
        if job["state"] != "done" or job["report"]["added"] != len(files):
            load.fail(f"folder job: {job}")
            return
        added.append(folder)
        query = pick(files)
        found = server.call("POST", "/api/v1/search", files=[("image", "q.jpg", query.read_bytes())],
                            fields={"k": 1})  # fmt: skip
        if expect("folder-search", found) and found.json()["results"][0]["path"] != str(query):
            load.fail(f"folder-search: {query} not found first")
        if len(added) > MAX_ADDED_FOLDERS:
            oldest = added.pop(0)
            removed = server.call("DELETE", f"/api/v1/folders?path={oldest}")
            if expect("folder-removed", removed) and removed.json() != {"removed": 6}:
                load.fail(f"folder-removed: {removed.json()}")

    def arrive():
        if len(arrivals) < MAX_ARRIVALS:
            arrivals.append(write_image(watched / f"arrival_{len(arrivals):05d}.jpg", 20_000 + len(arrivals)))

    watch = server.call("POST", "/api/v1/folders", json_body={"path": str(watched), "watch": True})
    assert watch.status == 202, watch.body
    try:
        for i in range(3):
            load.repeat(f"text-{i}", text)
        for i in range(2):
            load.repeat(f"upload-{i}", upload)
        load.repeat("similar", similar)
        load.repeat("status", status, pause=0.5)
        load.repeat("thumbnails", record_and_thumbnail, pause=0.1)
        load.repeat("folders", folder_cycle, pause=2.0)
        load.repeat("arrivals", arrive, pause=1.0)
        load.stop.wait(LOAD_S)
    finally:
        load.finish()
    try:
        # The watcher catches up with every arrival: each is found as itself.
        expected = STABLE + 2 + len(arrivals) + 6 * len(added)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            images = server.call("GET", "/api/v1/status").json()["images"]
            if images == expected:
                break
            time.sleep(0.5)
        assert images == expected
        for path in rng.sample(arrivals, min(10, len(arrivals))):
            found = server.call("POST", "/api/v1/search", files=[("image", "q.jpg", path.read_bytes())],
                                fields={"k": 1}).json()  # fmt: skip
            assert found["results"][0]["path"] == str(path)
    finally:
        code = server.stop()
    stderr = server.stderr
    lines = [f"mixed API load {LOAD_S:.0f} s: {sum(counts.values())} requests checked, {len(load.errors)} errors, "
             f"{len(arrivals)} files arrived, {counts['folder-added']} folders added"]  # fmt: skip
    for kind, values in sorted(load.latencies.items()):
        ms = [v * 1000 for v in values]
        lines.append(f"  {kind:10s} {len(ms):6d}  p50 {_percentile(ms, 0.5):7.1f} ms  "
                     f"p99 {_percentile(ms, 0.99):7.1f} ms  max {max(ms):7.1f} ms")  # fmt: skip
    print("\n" + "\n".join(lines))
    assert load.errors == [], load.errors[:5]
    assert code == 0 and "Traceback" not in stderr, stderr[-3000:]
    assert all(counts[k] > 0 for k in ("text", "upload", "similar", "status", "thumbnail", "folder-added"))
