"""`visualfinder watch` and `index --watch` end to end, in real processes with real observers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tomli_w
from imagegen import make_catalog, write_image
from procutil import unprivileged_prefix
from watchutil import FAST_WATCH, WatchProcess

from visualfinder.catalog.store import Catalog
from visualfinder.cli.main import main


@pytest.fixture
def fast_settings(data_dir):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "settings.toml").write_text(tomli_w.dumps(FAST_WATCH))


@pytest.fixture
def watching():
    started: list[WatchProcess] = []

    def _start(*args: str, prefix: list[str] | None = None) -> WatchProcess:
        process = WatchProcess(*args, prefix=prefix)
        started.append(process)
        return process

    yield _start
    for process in started:
        process.kill()


def test_watch_logs_one_line_per_batch_and_stops_cleanly_on_ctrl_c(fast_settings, watching, tmp_path, capsys):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 2)
    assert main(["index", str(catalog), "--watch"]) == 0
    assert "now watched" in capsys.readouterr().out
    watcher = watching()  # no PATH: every watched folder
    watcher.wait_for("stderr", "watching: watching 1 folder")
    write_image(catalog / "new.jpg", 20)
    (catalog / "broken.jpg").write_text("not a picture")
    line = watcher.wait_for("stdout", "1 skipped")
    assert "1 added, 0 updated, 0 moved, 0 removed, 1 skipped" in line and "broken.jpg: not an image" in line
    os.rename(catalog / "new.jpg", catalog / "renamed.jpg")
    watcher.wait_for("stdout", "1 moved")
    assert watcher.stop(signal.SIGINT) == 0
    assert "stopped: the folder watcher is stopped" in watcher.lines["stderr"][-1]
    assert len(watcher.lines["stdout"]) == 2  # one line per batch that changed something


def test_watch_path_marks_it_watched_and_sigterm_stops_cleanly_mid_catch_up(
    fast_settings, watching, tmp_path, data_dir
):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 30)
    watcher = watching(str(catalog))
    watcher.wait_for("stderr", "starting: catching up")
    assert watcher.stop(signal.SIGTERM) == 0
    assert "stopped: the folder watcher is stopped" in watcher.lines["stderr"][-1]
    catalog_db = Catalog(data_dir / "catalog.db")
    try:
        assert [(f.path, f.watched) for f in catalog_db.folders()] == [(str(catalog), True)]
        assert catalog_db.integrity_ok()
    finally:
        catalog_db.close()


def test_watch_without_watched_folders_says_how_to_add_one(capsys):
    assert main(["watch"]) == 2
    assert "visualfinder index PATH --watch" in capsys.readouterr().err


def _can_make_user_namespaces() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run([unshare, "-U", "-r", "sh", "-c", "echo 5 > /proc/sys/user/max_inotify_watches"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


@pytest.mark.skipif(not _can_make_user_namespaces(), reason="needs unshare and user namespaces (Linux)")
def test_reaching_the_inotify_watch_limit_says_so_and_falls_back_to_polling(
    fast_settings, watching, tmp_path
):
    """A user namespace gives the watcher a budget of 12 inotify watches for 31 folders."""
    catalog = tmp_path / "catalog"
    for i in range(30):
        write_image(catalog / f"shelf-{i:02d}" / "item.jpg", i)
    limit = [
        "unshare",
        "-U",
        "-r",
        "sh",
        "-c",
        'echo 12 > /proc/sys/user/max_inotify_watches && exec "$0" "$@"',
    ]
    watcher = watching(str(catalog), prefix=limit)
    line = watcher.wait_for("stderr", "polling:")
    assert "inotify watch limit is reached" in line and "max_user_watches" in line
    watcher.wait_for("stdout", "30 added")
    late = write_image(catalog / "shelf-29" / "late.jpg", 99)  # in a folder no watch was left for
    watcher.wait_for("stdout", "1 added")
    assert watcher.stop() == 0
    assert late.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_permission_denied_subfolder_is_reported_then_indexed_once_readable(
    fast_settings, watching, tmp_path
):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 2)
    locked = catalog / "locked"
    write_image(locked / "inside.jpg", 30)
    locked.chmod(0)
    prefix = unprivileged_prefix()
    try:
        watcher = watching(str(catalog), prefix=prefix)
        watcher.wait_for("stdout", f"cannot read {locked}: permission denied")
        watcher.wait_for("stdout", "2 added")
        watcher.wait_for("stderr", "watching:")
    finally:
        locked.chmod(0o755)
    watcher.wait_for("stdout", "1 added")  # the folder became readable: its image is indexed
    write_image(locked / "later.jpg", 31)  # and the folder is watched from now on
    deadline = time.monotonic() + 60
    while sum("1 added" in line for line in watcher.lines["stdout"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum("1 added" in line for line in watcher.lines["stdout"]) == 2, watcher.lines
    assert watcher.stop() == 0
