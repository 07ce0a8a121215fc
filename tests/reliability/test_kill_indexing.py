"""kill -9 at random moments of `visualfinder index`: the catalog survives whole, nothing is duplicated.

Each trial changes the catalog folder (new, changed, renamed, copied and deleted files), starts
the real CLI in a subprocess and SIGKILLs it at a seeded random point: during start-up, or a
random time after its n-th committed batch. The index is saved after every batch here, so
kills land in index saves too. After each kill the catalog file and the index (opened from a
copy, as the next process would) are checked; after the last one a normal run must finish the
job, leaving exactly the files on disk, once each.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from imagegen import write_image
from rel_harness import (
    catalog_generation,
    check_catalog_file,
    check_index_on_a_copy,
    files_under,
    finish,
    kill9,
    rng_for,
    scaled,
    start_cli,
    wait_until,
    write_settings,
)
from searching import search_image

from visualfinder.config import Settings
from visualfinder.library.facade import open_library

BATCH = 8
SIZE = (96, 72)


class Folder:
    """The catalog folder and what happened to it: the test's record of the truth on disk."""

    def __init__(self, root: Path, rng):
        self.root = root
        self.rng = rng
        self.next_seed = 0
        self.ever: set[str] = set()
        self.touched: set[str] = set()  # changed since the last completed check

    def add(self, count: int) -> None:
        for _ in range(count):
            sub = self.rng.choice(["", "", "shelf-a", "shelf-b/deep"])
            ext = self.rng.choice(["jpg", "jpg", "png", "webp"])
            path = self.root / sub / f"item_{self.next_seed:05d}.{ext}"
            write_image(path, 1000 + self.next_seed, SIZE)
            self.next_seed += 1
            self._note(path)

    def mutate(self) -> dict[str, int]:
        files = sorted(self.root.rglob("*.*"))
        self.rng.shuffle(files)
        counts = Counter()
        for path in files[: self.rng.randint(2, 6)]:  # deleted
            path.unlink()
            self._note(path)
            counts["deleted"] += 1
        for path in files[6:10]:  # renamed or moved to another subfolder
            target = self.root / self.rng.choice(["", "shelf-a", "moved"]) / f"renamed_{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            self._note(path, target)
            counts["moved"] += 1
        for path in files[10:14]:  # content replaced in place
            write_image(path, 50_000 + self.next_seed, SIZE, fmt=_format_of(path))
            self.next_seed += 1
            self._note(path)
            counts["changed"] += 1
        for path in files[14:16]:  # copied: the copy reuses the embedding
            target = path.with_name(f"copy_{path.name}")
            shutil.copy2(path, target)
            self._note(target)
            counts["copied"] += 1
        new = self.rng.randint(10, 30)
        self.add(new)
        counts["added"] = new
        return dict(counts)

    def _note(self, *paths: Path) -> None:
        for p in paths:
            self.ever.add(str(p))
            self.touched.add(str(p))


def _format_of(path: Path) -> str:
    return {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[path.suffix[1:]]


def _pending_commits(folder: Folder, committed: set[str]) -> int:
    work = len(files_under(folder.root) - committed) + len(folder.touched)
    return math.ceil(work / BATCH) + 1


def test_kill_9_at_random_moments_of_indexing_never_corrupts_or_duplicates(tmp_path, data_dir):
    trials = scaled(3, 24)
    rng = rng_for("kill-indexing")
    folder = Folder(tmp_path / "catalog", rng)
    folder.add(56)
    write_settings(data_dir, batch_size=BATCH, index_save_interval_s=0.0, decode_workers=1)
    outcomes: Counter = Counter()
    healths: Counter = Counter()
    previous: dict[str, tuple] = {}
    for trial in range(trials):
        if trial:
            folder.mutate()
        committed = {p for p, r in previous.items() if r[1] == "ok"}
        start_gen = max(catalog_generation(data_dir), 0)
        proc = start_cli(["--data-dir", str(data_dir), "index", str(folder.root)], tmp_path / f"trial{trial}")
        if trial and rng.random() < 0.15:  # during start-up: import, opening, scan
            point = rng.uniform(0.3, 4.0)
            _sleep_or_exit(proc, point)
            plan = f"start-up +{point:.1f}s"
        else:
            n = rng.randint(0, int(0.7 * _pending_commits(folder, committed)))  # the estimate errs high
            target = start_gen + n
            wait_until(lambda target=target: catalog_generation(data_dir) >= target, proc)
            # As soon as the commit shows (the index save follows it), or a while later.
            delay = 0.0 if rng.random() < 0.3 else rng.uniform(0.0, 0.3)
            _sleep_or_exit(proc, delay)
            plan = f"{n} commits +{delay:.2f}s"
        killed = kill9(proc)
        rc, _, err = finish(proc)
        outcomes["killed" if killed else "finished first"] += 1
        assert killed or rc == 0, err

        snap = check_catalog_file(data_dir, folder.ever)
        errors = {p: r[2] for p, r in snap.rows.items() if r[1] != "ok"}
        assert errors == {}, f"trial {trial} ({plan}): good files recorded as bad: {errors}"
        # Nothing committed is lost: a file untouched since it was committed keeps its row and id.
        on_disk = files_under(folder.root)
        for path, row in previous.items():
            if path in on_disk and path not in folder.touched and row[1] == "ok":
                assert snap.rows.get(path, (None,))[0] == row[0], f"trial {trial} ({plan}): lost {path}"
        check = check_index_on_a_copy(data_dir, tmp_path / "copy")
        healths[check.health] += 1
        previous = snap.rows
        folder.touched = set()
        print(f"trial {trial}: killed at {plan}: {killed and 'killed' or 'finished'}, "
              f"{len(snap.rows)} rows, index {check.health}")  # fmt: skip

    # A normal run finishes the job: exactly the files on disk, once each, all indexed.
    lib = open_library(Settings.load(data_dir))
    try:
        assert lib.index([folder.root]).errors == []
    finally:
        lib.close()
    snap = check_catalog_file(data_dir, folder.ever)
    on_disk = files_under(folder.root)
    assert set(snap.rows) == on_disk
    assert all(r[1] == "ok" for r in snap.rows.values())
    lib = open_library(Settings.load(data_dir))
    try:
        assert lib.index_health == "ok"
        assert len(lib.vector_index) == len(on_disk)
        for path in rng.sample(sorted(on_disk), 3):
            best = search_image(lib, path, k=1)[0]
            assert best.score > 0.999 and Path(best.path).read_bytes() == Path(path).read_bytes()
    finally:
        lib.close()
    print(f"kill trials: {dict(outcomes)}; index after a kill: {dict(healths)}; final {len(on_disk)} files")


def _sleep_or_exit(proc: subprocess.Popen, seconds: float) -> None:
    """Sleep `seconds` unless the process exits first."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass
