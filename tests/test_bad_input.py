"""Bad input gets a one-line reason, indexing goes on, and nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from imagegen import huge_png_header, make_catalog, write_image
from procutil import subprocess_env, unprivileged_prefix
from searching import search_image

from visualfinder.errors import FolderNotFoundError, QueryError


@pytest.fixture
def hostile_folder(tmp_path):
    root = tmp_path / "catalog"
    good = make_catalog(root, 3)
    (root / "zero.jpg").write_bytes(b"")
    full = (root / "product_0000.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "notes.jpg").write_text("this is a shopping list, not a picture\n")
    (root / "broken-link.png").symlink_to(root / "does-not-exist.png")
    # A header that claims 60000 x 60000 pixels: refused before any pixel is decoded.
    (root / "bomb.png").write_bytes(huge_png_header(60000, 60000))
    os.mkfifo(root / "pipe.jpg")
    return root, good


EXPECTED_REASONS = {
    "zero.jpg": "empty file",
    "truncated.jpg": "truncated",
    "notes.jpg": "not an image (content is text)",
    "broken-link.png": "broken symlink",
    "bomb.png": "too large to decode safely",
    "pipe.jpg": "not a regular file",
}


def test_each_bad_file_is_skipped_with_its_reason_and_the_run_goes_on(library, hostile_folder):
    root, good = hostile_folder
    report = library.index([root])
    assert report.added == len(good)
    reasons = {os.path.basename(e.path): e.reason for e in report.errors}
    assert set(reasons) == set(EXPECTED_REASONS)
    for name, expected in EXPECTED_REASONS.items():
        assert expected in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    status = library.status()
    assert status.stats.errors == len(EXPECTED_REASONS)
    assert {os.path.basename(p) for p, _ in status.errors} == set(EXPECTED_REASONS)
    assert search_image(library, good[0], k=1)[0].path == str(good[0])


def test_bad_files_are_not_retried_until_they_change(library, hostile_folder):
    root, _ = hostile_folder
    library.index([root])
    again = library.index()
    assert again.errors == [] and again.added == 0
    write_image(root / "notes.jpg", 42)  # the user replaced it with a real picture
    fixed = library.index()
    assert fixed.updated == 1
    assert library.catalog.stat_row(str(root / "notes.jpg")).status == "ok"
    assert library.status().stats.errors == len(EXPECTED_REASONS) - 1


def test_a_missing_folder_is_refused_and_nothing_is_added(library, tmp_path):
    make_catalog(tmp_path / "real", 2)
    with pytest.raises(FolderNotFoundError, match="folder not found"):
        library.index([tmp_path / "real", tmp_path / "missing"])
    assert library.folders() == []


def test_a_file_given_as_folder_is_refused(library, tmp_path):
    image = write_image(tmp_path / "one.jpg", 1)
    with pytest.raises(FolderNotFoundError, match="not a folder"):
        library.index([image])


def test_an_undecodable_query_image_is_a_clear_error(library, tmp_path):
    make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    bad = tmp_path / "query.jpg"
    bad.write_text("not an image")
    with pytest.raises(QueryError, match="cannot use .*query.jpg as a query image: not an image"):
        search_image(library, bad)
    with pytest.raises(QueryError, match="file disappeared|not found|cannot use"):
        search_image(library, tmp_path / "missing.jpg")


def test_an_unmounted_folder_keeps_its_images(library, tmp_path):
    root = tmp_path / "drive"
    make_catalog(root, 3)
    library.index([root])
    root.rename(tmp_path / "elsewhere")
    report = library.index()
    assert report.removed == 0
    assert report.folder_errors and "unmounted" in report.folder_errors[0][1]
    assert library.catalog.stats(library.model_key).ok == 3


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_an_unreadable_file_and_folder_are_reported(tmp_path, data_dir):
    """Root ignores file permissions, so as root the check runs without the DAC capabilities."""
    root = tmp_path / "catalog"
    make_catalog(root, 2)
    secret = write_image(root / "secret.jpg", 7)
    locked = root / "locked"
    write_image(locked / "inside.jpg", 8)
    secret.chmod(0)
    locked.chmod(0)
    script = (
        "import sys; from visualfinder.config import Settings; from visualfinder.library.facade import open_library\n"
        "lib = open_library(Settings.load(sys.argv[1]))\n"
        "r = lib.index([sys.argv[2]])\n"
        "print(r.added); [print('E', e.path, '|', e.reason) for e in r.errors]\n"
        "[print('F', p, '|', why) for p, why in r.folder_errors]\n"
        "lib.close()\n"
    )
    env = subprocess_env()
    prefix = unprivileged_prefix()
    try:
        proc = subprocess.run([*prefix, sys.executable, "-c", script, str(data_dir), str(root)],
                              capture_output=True, text=True, env=env, timeout=180)  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "2"
    assert f"E {secret} | permission denied" in lines
    assert f"F {locked} | permission denied" in lines
