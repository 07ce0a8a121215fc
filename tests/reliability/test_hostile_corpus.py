"""A corpus of hostile files, indexed end to end: each is indexed or skipped with its reason, the
run goes on, nothing hangs; a file that is not an image is not retried until it changes, one
that could not be read now (permissions, the time limit) is retried by the next scan.

tests/test_bad_input.py covers the common cases one by one; this is the whole list of the
reliability issue in one real CLI run (file permissions enforced even for root, see
rel_harness.without_dac_prefix), plus bombs aimed at memory and time.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from hostile_files import STALLED_FILE, build_corpus
from rel_harness import finish, start_cli, without_dac_prefix, write_settings

from visualfinder.catalog.store import path_from_db
from visualfinder.config import Settings
from visualfinder.library.facade import CATALOG_FILE, open_library

STALLING_CLI = Path(__file__).with_name("stalling_cli.py")


def _rows(data_dir) -> dict[str, tuple]:
    conn = sqlite3.connect(data_dir / CATALOG_FILE)
    try:
        return {
            path_from_db(p): (status, error, width, height, kind)
            for p, status, error, width, height, kind in conn.execute(
                "SELECT path, status, error, width, height, error_kind FROM images"
            )
        }
    finally:
        conn.close()


def test_every_hostile_file_is_indexed_or_skipped_with_its_reason(tmp_path, data_dir):
    prefix = without_dac_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    root = tmp_path / "corpus"
    expect = build_corpus(root)
    # One decoder, so the stuck one must be replaced; the limit ends the one file that never reads.
    write_settings(data_dir, file_time_limit_s=5.0, decode_workers=1, batch_size=8)
    started = time.monotonic()
    try:
        rc, out, err = finish(
            start_cli(
                [STALLED_FILE, "--", "--data-dir", str(data_dir), "index", str(root)],
                tmp_path / "log",
                prefix,
                script=STALLING_CLI,
            )  # fmt: skip
        )
    finally:
        (root / "locked").chmod(0o755)
    seconds = time.monotonic() - started
    assert rc == 0, err
    rows = _rows(data_dir)
    problems = []
    for path, want in expect.items():
        row = rows.get(path)
        if row is None:
            problems.append(f"{path}: no row")
        elif want.indexed and row[0] != "ok":
            problems.append(f"{path}: should be indexed, skipped: {row[1]}")
        elif want.indexed and want.size and (row[2], row[3]) != want.size:
            problems.append(f"{path}: recorded size {row[2]}x{row[3]}, expected {want.size}")
        elif not want.indexed and (row[0] != "error" or want.reason not in row[1] or "\n" in row[1]):
            problems.append(f"{path}: expected skipped with {want.reason!r}, got {row[:2]}")
    assert problems == []
    transient = {str(root / "secret.jpg"), str(root / STALLED_FILE)}  # permission, time limit
    assert {p for p, r in rows.items() if r[4] == "transient"} == transient
    assert all(r[4] == "permanent" for p, r in rows.items() if r[0] == "error" and p not in transient)
    # The folder loop is walked once: no row twice under another name, nothing unexpected.
    assert set(rows) == set(expect)
    assert f"{root / 'locked'}: permission denied" in err
    assert f"skipped {sum(not e.indexed for e in expect.values())} file(s)" in err
    print(f"{len(expect)} hostile files in {seconds:.1f}s: "
          f"{sum(e.indexed for e in expect.values())} indexed, {sum(not e.indexed for e in expect.values())} skipped")  # fmt: skip

    # The transient skips are retried (the share no longer stalls, the permissions were fixed:
    # a chmod changes no mtime, only the ctime); files that are not images are not retried until
    # they change; the folder that became readable is picked up.
    (root / "secret.jpg").chmod(0o644)
    lib = open_library(Settings.load(data_dir))
    try:
        again = lib.index()
        assert (again.added, again.updated, again.removed, again.errors) == (1, 2, 0, [])
        assert lib.catalog.stat_row(str(root / "locked" / "inside_locked.jpg")).status == "ok"
        assert all(lib.catalog.stat_row(p).status == "ok" for p in transient)
    finally:
        lib.close()
    after = _rows(data_dir)
    assert {p: r for p, r in after.items() if p in rows and p not in transient} == {
        p: r for p, r in rows.items() if p not in transient
    }
