"""Skipped files are permanent (not an image: tried again when the file changes) or transient
(not readable now: tried again on later scans, with a capped backoff); nothing stays skipped
after its cause is gone, and `index --retry-skipped` tries them all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from imagegen import make_catalog, write_image
from procutil import subprocess_env, unprivileged_prefix
from stalled_reads import stalled_reads

from visualfinder.ingest.retry import BACKOFF_BASE_S, BACKOFF_CAP_S, PERMANENT, TRANSIENT, next_retry_at


def test_the_backoff_of_a_file_that_keeps_failing_doubles_up_to_its_cap():
    now = 1000.0
    assert next_retry_at(PERMANENT, 1, now) is None  # only a change of the file cures it
    assert next_retry_at(TRANSIENT, 1, now) == now  # the next scan
    waits = [next_retry_at(TRANSIENT, attempts, now) - now for attempts in range(2, 12)]
    assert waits[:3] == [BACKOFF_BASE_S, 2 * BACKOFF_BASE_S, 4 * BACKOFF_BASE_S]
    assert waits == sorted(waits) and waits[-1] == BACKOFF_CAP_S


def test_a_permanent_skip_waits_for_the_file_to_change(library, tmp_path):
    root = tmp_path / "catalog"
    make_catalog(root, 2)
    broken = root / "broken.jpg"
    broken.write_text("not an image")
    first = library.index([root])
    assert [(e.path, e.kind) for e in first.errors] == [(str(broken), PERMANENT)]

    again = library.index()
    assert (again.errors, again.unchanged) == ([], 3)  # the same bytes: not tried again
    retried = library.index(retry_skipped=True)
    assert [(e.path, e.kind) for e in retried.errors] == [(str(broken), PERMANENT)]
    assert library.catalog.stat_row(str(broken)).attempts == 2

    write_image(broken, 5)
    fixed = library.index()
    assert (fixed.updated, fixed.errors) == (1, [])
    row = library.catalog.stat_row(str(broken))
    assert (row.status, row.error_kind, row.attempts, row.retry_at) == ("ok", None, 0, None)


def test_a_transient_skip_is_retried_with_a_backoff_and_at_once_after_a_ctime_change(reopen, tmp_path):
    root = tmp_path / "share"
    root.mkdir()
    stalled = write_image(root / "stalled.jpg", 3)
    # Only the stalled file in the folder, so that no other file can be near the time limit.
    lib = reopen(file_time_limit_s=1.0, decode_workers=1)
    with stalled_reads("stalled.jpg"):
        first = lib.index([root])
        assert [(e.path, e.kind) for e in first.errors] == [(str(stalled), TRANSIENT)]
        row = lib.catalog.stat_row(str(stalled))
        assert row.attempts == 1 and row.retry_at <= time.time()  # due on the next scan

        second = lib.index()
        assert [e.kind for e in second.errors] == [TRANSIENT]
        row = lib.catalog.stat_row(str(stalled))
        assert row.attempts == 2 and row.retry_at > time.time()  # backed off (1 minute)

        third = lib.index()
        assert (third.errors, third.unchanged) == ([], 1)  # not due yet: not tried

        os.chmod(stalled, 0o644)  # a permission fix changes the ctime: tried at once
        fourth = lib.index()
        assert [e.kind for e in fourth.errors] == [TRANSIENT]
        assert lib.catalog.stat_row(str(stalled)).attempts == 3
    # The share is back: --retry-skipped does not wait for the backoff.
    fixed = lib.index(retry_skipped=True)
    assert (fixed.added + fixed.updated, fixed.errors) == (1, [])
    status = lib.status()
    assert status.skipped == [] and status.skipped_counts == {PERMANENT: 0, TRANSIENT: 0}


def test_status_lists_skipped_files_by_kind(reopen, tmp_path):
    root = tmp_path / "catalog"
    make_catalog(root, 1)
    (root / "broken.jpg").write_text("not an image")
    write_image(root / "stalled.jpg", 4)
    lib = reopen(file_time_limit_s=1.0, decode_workers=1)
    with stalled_reads("stalled.jpg"):
        lib.index([root])
    status = lib.status()
    assert [(os.path.basename(f.path), f.kind) for f in status.skipped] == [
        ("stalled.jpg", TRANSIENT), ("broken.jpg", PERMANENT)
    ]  # fmt: skip
    assert status.skipped_counts == {PERMANENT: 1, TRANSIENT: 1}
    listed = status.to_json()
    assert listed["skipped"] == {PERMANENT: 1, TRANSIENT: 1}
    assert [(os.path.basename(f["path"]), f["kind"], f["attempts"]) for f in listed["error_files"]] == [
        ("stalled.jpg", TRANSIENT, 1), ("broken.jpg", PERMANENT, 1)
    ]  # fmt: skip


def test_retry_skipped_on_the_command_line(tmp_path, data_dir, cli):
    root = tmp_path / "catalog"
    make_catalog(root, 2)
    (root / "broken.jpg").write_text("not an image")
    assert cli("index", str(root)).returncode == 0
    plain = cli("index")
    assert plain.returncode == 0 and "0 skipped" in plain.stdout, plain.stdout
    retried = cli("index", "--retry-skipped")
    assert retried.returncode == 0 and "1 skipped" in retried.stdout, retried.stdout
    assert f"{root / 'broken.jpg'}: not an image" in retried.stderr
    status = cli("status")
    assert "1 skipped (0 could not be read now, 1 not images)" in status.stdout, status.stdout
    assert "skipped, not a readable image (tried again when the file changes):" in status.stdout


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_file_skipped_for_its_permissions_is_indexed_once_they_are_fixed(tmp_path, data_dir):
    """The issue's reproduction: mode 000, skipped; chmod 644; the next `index` indexes it."""
    root = tmp_path / "catalog"
    make_catalog(root, 2)
    secret = write_image(root / "secret.jpg", 7)
    secret.chmod(0)
    prefix = unprivileged_prefix()  # root reads anything: run without the DAC capabilities

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, sys.executable, "-m", "visualfinder", *args], capture_output=True,
                              text=True, env=subprocess_env(), timeout=240)  # fmt: skip

    first = run("index", str(root))
    assert first.returncode == 0, first.stderr
    assert f"{secret}: permission denied (tried again later)" in first.stderr
    status = run("status")
    assert "skipped, could not be read now" in status.stdout and "1 attempt, next: next scan" in status.stdout
    listed = json.loads(run("status", "--json").stdout)
    assert listed["skipped"] == {PERMANENT: 0, TRANSIENT: 1}
    secret.chmod(0o644)
    second = run("index")
    assert second.returncode == 0, second.stderr
    assert "1 updated" in second.stdout and "0 skipped" in second.stdout, second.stdout
    assert json.loads(run("status", "--json").stdout)["ok"] == 3
