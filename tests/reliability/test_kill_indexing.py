"""kill -9 at random moments of `visualfinder index`: the catalog survives whole, nothing is duplicated.

Each trial changes the catalog folder (new, changed, renamed, copied and deleted files), starts
the real CLI in a subprocess (tests/reliability/pausing_cli.py) and SIGKILLs it at a seeded
random point of its progress, never of the clock: during start-up (opening the catalog, the
scan), or once the files before a randomly chosen one were read, decoded and committed, while
that one's read never returns. So every trial but those at start-up lands with part of its
work committed (0 < committed < total), on a fast machine as on a slow one; each trial reports
where its kill landed. The index is saved after every batch here, so kills land in index saves
too. After each kill the catalog file and the index (opened from a copy, as the next process
would) are checked; after the last one a normal run must finish the job, leaving exactly the
files on disk, once each.
"""

from __future__ import annotations

import os
import shutil
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
PAUSING_CLI = Path(__file__).with_name("pausing_cli.py")


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


def _work(folder: Folder, rows: dict[str, tuple], stats: dict[str, tuple]) -> set[str]:
    """The files on disk a run still has to index: not committed with their current stat."""
    return {p for p in files_under(folder.root) if (rows[p][5:7] if p in rows else None) != stats.get(p)}


def _stats(folder: Folder) -> dict[str, tuple]:
    out = {}
    for path in files_under(folder.root):
        st = os.stat(path)
        out[path] = (st.st_size, st.st_mtime_ns)
    return out


def test_kill_9_at_random_moments_of_indexing_never_corrupts_or_duplicates(tmp_path, data_dir):
    trials = scaled(3, 24)
    rng = rng_for("kill-indexing")
    folder = Folder(tmp_path / "catalog", rng)
    folder.add(56)
    write_settings(data_dir, batch_size=BATCH, index_save_interval_s=0.0, decode_workers=1)
    outcomes: Counter = Counter()
    healths: Counter = Counter()
    landings: list[str] = []
    previous: dict[str, tuple] = {}
    mid_run = 0
    for trial in range(trials):
        if trial:
            folder.mutate()
        before = _stats(folder)
        work = _work(folder, previous, before)
        marker = tmp_path / f"trial{trial}.paused"
        # Enough files before the stall to fill a batch beside the moves and copies (no model).
        reads = rng.randint(2 * BATCH, len(work) - 1) if len(work) > 2 * BATCH else None
        if reads is None or (trial and rng.random() < 0.15):
            point = rng.choice(["event:sqlite3.connect", "event:os.scandir"])
            plan = f"start-up ({point.split(':')[1]})"
        else:
            point = f"reads:{reads}:{folder.root}{os.sep}"
            plan = f"after {reads} of {len(work)} files read"
        start_gen = max(catalog_generation(data_dir), 0)
        proc = start_cli([str(marker), point, "--", "--data-dir", str(data_dir), "index", str(folder.root)],
                         tmp_path / f"trial{trial}", script=PAUSING_CLI)  # fmt: skip
        paused = wait_until(lambda marker=marker: marker.exists() and marker.stat().st_size > 0, proc)
        if paused and point.startswith("reads"):
            # The files read before the stall are committed batch by batch; the kill comes after
            # the first commit (always one: `reads` holds a full batch), at a seeded later one.
            commits = rng.randint(1, max(1, (reads - 6) // BATCH))
            wait_until(lambda target=start_gen + commits: catalog_generation(data_dir) >= target, proc)
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
        committed = len(work) - len(_work(folder, snap.rows, before))
        if point.startswith("reads"):
            assert 0 < committed < len(work), f"trial {trial} ({plan}): {committed} of {len(work)} committed"
        mid_run += 0 < committed < len(work)
        check = check_index_on_a_copy(data_dir, tmp_path / "copy")
        healths[check.health] += 1
        previous = snap.rows
        folder.touched = set()
        landing = f"trial {trial}: killed {plan}: {committed}/{len(work)} committed"
        landings.append(landing)
        print(f"{landing}, {killed and 'killed' or 'finished'}, {len(snap.rows)} rows, index {check.health}")
    assert mid_run >= 1, landings

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
    print(f"kill trials: {dict(outcomes)}, {mid_run} of {trials} landed with part of their work committed; "
          f"index after a kill: {dict(healths)}; final {len(on_disk)} files")  # fmt: skip
