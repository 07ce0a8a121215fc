"""A crash while the vector index is saved or rebuilt never costs the catalog, and the index recovers.

Three kinds of fault: a SIGKILL just before each file operation of the save (crashpoint.py, through
Python's audit hooks: every step of temp file, fsync, sidecar removal, rename, folder fsync and
new sidecar), SIGKILL at seeded random moments inside the save (savesignal.py tells when it
starts: the kill may land while usearch is still writing the temp file), and SIGKILL at seeded
random times during `visualfinder rebuild-index`.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from rel_harness import (
    LONG,
    catalog_fingerprint,
    check_catalog_file,
    check_index_on_a_copy,
    cli_env,
    delete_rows,
    finish,
    kill9,
    rng_for,
    scaled,
    start_cli,
    synthetic_library,
)

from visualfinder.config import Settings
from visualfinder.library.facade import open_library

CRASHPOINT = Path(__file__).with_name("crashpoint.py")
SAVESIGNAL = Path(__file__).with_name("savesignal.py")


def _crashpoint(data_dir: Path, at: int, record: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CRASHPOINT), str(data_dir), str(at), str(record), "--",
         "--data-dir", str(data_dir), "rebuild-index"],
        capture_output=True, text=True, env=cli_env(), timeout=240,
    )  # fmt: skip


def _stale_library(data_dir: Path) -> None:
    """A saved index that the catalog has moved past: rows added and deleted since the save."""
    ids = synthetic_library(data_dir, 1500, seed=1)
    lib = open_library(Settings.load(data_dir))
    lib.close()
    synthetic_library(data_dir, 300, seed=2, start=10_000)
    delete_rows(data_dir, ids[:100])


def test_a_crash_before_any_step_of_the_index_save_leaves_a_usable_index(tmp_path, data_dir):
    _stale_library(data_dir)
    pristine = tmp_path / "pristine"
    shutil.copytree(data_dir, pristine)
    fingerprint = catalog_fingerprint(data_dir)

    record = tmp_path / "ops.txt"
    done = _crashpoint(data_dir, -1, record)
    assert done.returncode == 0, done.stderr
    ops = record.read_text().splitlines()
    # The save protocol, as the operations show it (opening the old files comes first).
    save = ops[ops.index("open index.usearch.tmp r") :]
    assert save == [
        "open index.usearch.tmp r",  # fsync the new file
        "open index.usearch.tmp r",  # its checksum, for the sidecar
        "remove index.usearch.json",  # the old sidecar must not vouch for the new file
        "rename index.usearch.tmp -> index.usearch",
        "open <data dir> r",  # fsync the folder: the rename is durable before the new sidecar exists
        "open index.usearch.json.tmp w",
        "rename index.usearch.json.tmp -> index.usearch.json",
        "open <data dir> r",
    ], ops

    # Every operation in the long run; in CI, each step of the save that changes the files.
    save_start = ops.index("remove index.usearch.json") - 2
    steps = [
        i for i, op in enumerate(ops) if LONG or (i >= save_start and not op.startswith("open <data dir>"))
    ]
    healths: Counter = Counter()
    for at in steps:
        shutil.rmtree(data_dir)
        shutil.copytree(pristine, data_dir)
        crashed = _crashpoint(data_dir, at, record)
        assert crashed.returncode == -9, (at, ops[at], crashed.stderr)
        assert catalog_fingerprint(data_dir) == fingerprint  # the catalog is never touched
        check_catalog_file(data_dir)
        check = check_index_on_a_copy(data_dir, tmp_path / "copy")
        healths[check.health] += 1
        assert check.vectors == fingerprint[0]
        print(f"crash before {ops[at]!r}: next open finds the index {check.health}")
    # Before the old sidecar goes, the old index is used and caught up; after it, rebuilt.
    assert healths["caught up"] and healths["rebuilt"], healths

    # From the last crashed state, a normal run completes and leaves a current index.
    rc, out, err = finish(start_cli(["--data-dir", str(data_dir), "rebuild-index"], tmp_path / "again"))
    assert rc == 0, err
    assert check_index_on_a_copy(data_dir, tmp_path / "copy").health == "ok"


class _SaveWatch:
    """`visualfinder rebuild-index` run under savesignal.py: wait for its save to start or end."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.read_end, write_end = os.pipe()
        try:
            self.proc = start_cli(
                [str(data_dir), str(write_end), "--", "--data-dir", str(data_dir), "rebuild-index"],
                log_dir, script=SAVESIGNAL, pass_fds=(write_end,),
            )  # fmt: skip
        finally:
            os.close(write_end)

    def wait_for(self, signal_byte: bytes, timeout: float = 120) -> float | None:
        """monotonic() when the child sent `signal_byte`; None if it exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.read_end], [], [], 0.5)
            if ready:
                got = os.read(self.read_end, 1)
                if not got:
                    return None  # the child exited (its end of the pipe closed)
                if got == signal_byte:
                    return time.monotonic()
        raise AssertionError(f"no {signal_byte!r} from the child within {timeout}s")

    def close(self) -> None:
        os.close(self.read_end)


def _save_phase(data_dir: Path) -> str:
    """Where the save was when it was killed, as its files show it."""
    tmp = (data_dir / "index.usearch.tmp").exists()
    sidecar = (data_dir / "index.usearch.json").exists()
    if tmp:
        return "writing the temp file" if sidecar else "temp file written, old sidecar gone"
    return "done" if sidecar else "renamed, no sidecar yet"


def test_kill_9_at_random_moments_inside_the_index_save_never_loses_the_index(tmp_path, data_dir):
    trials = scaled(3, 24)
    synthetic_library(data_dir, scaled(4000, 20_000))
    fingerprint = catalog_fingerprint(data_dir)
    rc, _, err = finish(start_cli(["--data-dir", str(data_dir), "rebuild-index"], tmp_path / "first"))
    assert rc == 0, err
    # How long the save takes, from its start to its last rename (the longest of the runs).
    durations = []
    for run in range(scaled(1, 3)):
        watch = _SaveWatch(data_dir, tmp_path / f"calibrate{run}")
        try:
            start, end = watch.wait_for(b"s"), watch.wait_for(b"e")
            assert start is not None and end is not None
            durations.append(end - start)
            assert finish(watch.proc)[0] == 0
        finally:
            watch.close()
    duration = max(durations)
    rng = rng_for("kill-save")
    phases: Counter = Counter()
    healths: Counter = Counter()
    killed = 0
    for trial in range(trials):
        watch = _SaveWatch(data_dir, tmp_path / f"trial{trial}")
        try:
            assert watch.wait_for(b"s") is not None
            time.sleep(rng.uniform(0, 1.1) * duration)
            killed += kill9(watch.proc)
            finish(watch.proc)
        finally:
            watch.close()
        phases[_save_phase(data_dir)] += 1
        assert catalog_fingerprint(data_dir) == fingerprint  # the catalog is never touched
        check_catalog_file(data_dir)
        check = check_index_on_a_copy(data_dir, tmp_path / "copy")
        healths[check.health] += 1
        assert check.vectors == fingerprint[0]
    print(
        f"index save ({duration * 1000:.0f} ms, {fingerprint[0]} vectors): {killed} of {trials} runs killed "
        f"inside it; files left: {dict(phases)}; next open: {dict(healths)}"
    )
    assert killed >= trials * 2 // 3
    # From the last killed state, a normal run completes and leaves a current index.
    rc, _, err = finish(start_cli(["--data-dir", str(data_dir), "rebuild-index"], tmp_path / "again"))
    assert rc == 0, err
    assert check_index_on_a_copy(data_dir, tmp_path / "copy").health == "ok"


def test_kill_9_at_random_moments_of_rebuild_index_never_touches_the_catalog(tmp_path, data_dir):
    trials = scaled(2, 20)
    synthetic_library(data_dir, scaled(4000, 20_000))
    fingerprint = catalog_fingerprint(data_dir)
    for run in ("first", "calibrate"):  # the first also builds the missing index while opening
        started = time.monotonic()
        rc, _, err = finish(start_cli(["--data-dir", str(data_dir), "rebuild-index"], tmp_path / run))
        assert rc == 0, err
        duration = time.monotonic() - started
    rng = rng_for("kill-rebuild")
    healths: Counter = Counter()
    killed = 0
    for trial in range(trials):
        proc = start_cli(["--data-dir", str(data_dir), "rebuild-index"], tmp_path / f"trial{trial}")
        try:
            proc.wait(rng.uniform(0.1, 1.1) * duration)
        except subprocess.TimeoutExpired:
            pass
        killed += kill9(proc)
        finish(proc)
        assert catalog_fingerprint(data_dir) == fingerprint
        check = check_index_on_a_copy(data_dir, tmp_path / "copy")
        healths[check.health] += 1
        assert check.vectors == fingerprint[0]
    print(
        f"rebuild-index: {killed} of {trials} runs killed (full run {duration:.1f}s); next open: {dict(healths)}"
    )
    if trials >= 10:
        assert killed >= trials // 2


@pytest.mark.parametrize("leftover", ["index.usearch.tmp", "index.usearch.json.tmp"])
def test_a_temp_file_left_by_a_crash_does_not_disturb_the_next_save(data_dir, tmp_path, leftover):
    synthetic_library(data_dir, 200)
    lib = open_library(Settings.load(data_dir))
    lib.close()
    (data_dir / leftover).write_bytes(b"half a file from a killed process")
    lib = open_library(Settings.load(data_dir))
    try:
        assert lib.index_health == "ok"
        synthetic_library(data_dir, 10, seed=5, start=5000)
        assert lib.rebuild_index() == 210
    finally:
        lib.close()
    assert not (data_dir / leftover).exists()
    assert check_index_on_a_copy(data_dir, tmp_path / "copy").health == "ok"
