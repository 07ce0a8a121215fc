"""A full disk or a read-only data folder: a clear one-line error, no partial catalog, and the next
run (with space again) finishes the job without losing or duplicating anything.

Disk full is real: a small tmpfs when we may mount one (root), and RLIMIT_FSIZE (EFBIG on the
first write past the limit) in a subprocess everywhere. Read-only is a read-only bind mount as
root, file modes otherwise.
"""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from imagegen import make_catalog, product_image, write_image
from rel_harness import (
    catalog_fingerprint,
    check_catalog_file,
    check_index_on_a_copy,
    cli_env,
    files_under,
    synthetic_library,
    write_settings,
)
from searching import search_image

from visualfinder.config import Settings
from visualfinder.errors import CatalogError, SettingsError, StorageError, VisualFinderError
from visualfinder.ingest.imaging import write_thumbnail
from visualfinder.library.facade import CATALOG_FILE, open_library
from visualfinder.library.live_index import INDEX_FILE
from visualfinder.search.request import QueryTerm, SearchRequest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _mount(*args: str) -> bool:
    return (
        shutil.which("mount") is not None
        and subprocess.run(["mount", *args], capture_output=True).returncode == 0
    )


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` at `path` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT or not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)):
        pytest.skip("cannot mount a small tmpfs here (needs root); the RLIMIT_FSIZE test covers disk full")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def read_only(path: Path):
    """Make `path` read-only for this process: a read-only bind mount as root, modes otherwise."""
    if IS_ROOT:
        if not (_mount("--bind", str(path), str(path)) and _mount("-o", "remount,bind,ro", str(path))):
            subprocess.run(["umount", "-l", str(path)], check=False)
            pytest.skip("cannot make a read-only bind mount here")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield path
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def _no_error_rows(data_dir: Path) -> None:
    conn = sqlite3.connect(data_dir / CATALOG_FILE)
    try:
        assert conn.execute("SELECT path, error FROM images WHERE status != 'ok'").fetchall() == []
    finally:
        conn.close()


def test_a_full_disk_stops_indexing_cleanly_and_the_next_run_finishes(tmp_path):
    root = tmp_path / "catalog"
    files = make_catalog(root, 150)
    with small_disk(tmp_path / "disk", "700k") as disk:
        data_dir = disk / "library"
        write_settings(data_dir, batch_size=16)
        lib = open_library(Settings.load(data_dir))
        try:
            with pytest.raises(VisualFinderError) as failure:
                lib.index([root])
        finally:
            lib.close()  # must not raise either, though the index cannot be saved
        message = _one_line(failure.value)
        assert "free some disk space" in message and isinstance(failure.value, (CatalogError, StorageError))
        snap = check_catalog_file(data_dir, {str(f) for f in files})
        assert 0 < len(snap.rows) < len(files)
        _no_error_rows(data_dir)  # no image blamed for the disk being full
        assert not [p for p in disk.rglob("*.tmp")]
        check_index_on_a_copy(data_dir, tmp_path / "copy")

        assert _mount("-o", "remount,size=8m", str(disk))  # the user frees space
        lib = open_library(Settings.load(data_dir))
        try:
            report = lib.index()
            assert report.errors == [] and report.added == len(files) - len(snap.rows)
        finally:
            lib.close()
        snap = check_catalog_file(data_dir)
        assert set(snap.rows) == files_under(root)
        assert check_index_on_a_copy(data_dir, tmp_path / "copy").vectors == len(files)
    print(f"disk full after {len(files) - report.added} of {len(files)} images: {message}")


def test_a_thumbnail_on_a_filling_disk_is_refused_not_truncated(tmp_path):
    """Pillow's encoder ignores short writes: it "saved" 4 KB of an 11 KB JPEG without an error."""
    picture = product_image(3, (400, 300))
    with small_disk(tmp_path / "disk", "64k") as disk:
        with open(disk / "filler", "wb") as fh:
            fh.write(bytes(shutil.disk_usage(disk).free - 6000))
        with pytest.raises(OSError, match="No space left"):
            write_thumbnail(picture, 400, disk / "thumbs" / "t.jpg")
        assert not [p for p in disk.rglob("*") if p.is_file() and p.name != "filler"]


def test_a_file_size_limit_stops_the_cli_with_one_line_and_nothing_half_written(tmp_path, data_dir):
    """RLIMIT_FSIZE: the catalog's next write past 256 KB fails with EFBIG, as on a full disk."""
    root = tmp_path / "catalog"
    files = make_catalog(root, 120)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))

    cmd = [sys.executable, "-m", "visualfinder", "--data-dir", str(data_dir), "index", str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), preexec_fn=limit, timeout=240)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("visualfinder: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "nothing was lost" in errors[0] or "free some disk space" in errors[0]
    snap = check_catalog_file(data_dir, {str(f) for f in files})
    _no_error_rows(data_dir)
    check_index_on_a_copy(data_dir, tmp_path / "copy")
    lib = open_library(Settings.load(data_dir))  # the limit is gone: the next run finishes
    try:
        assert lib.index().errors == []
    finally:
        lib.close()
    assert set(check_catalog_file(data_dir).rows) == files_under(root)
    print(f"EFBIG after {len(snap.rows)} rows: {errors[0]}")


def test_a_read_only_data_folder_is_a_clear_error_and_stays_untouched(tmp_path, data_dir):
    make_catalog(tmp_path / "catalog", 4)
    lib = open_library(Settings.load(data_dir))
    lib.index([tmp_path / "catalog"])
    lib.close()
    before = catalog_fingerprint(data_dir)
    files_before = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    with read_only(data_dir):
        with pytest.raises(CatalogError) as failure:
            open_library(Settings.load(data_dir))
        assert "read-only" in _one_line(failure.value)
    assert catalog_fingerprint(data_dir) == before
    assert {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()} == files_before


def test_a_data_folder_that_cannot_be_created_is_a_clear_error(tmp_path):
    parent = tmp_path / "locked-parent"
    parent.mkdir()
    with read_only(parent), pytest.raises(SettingsError) as failure:
        open_library(Settings.load(parent / "library"))
    assert "cannot create the data folder" in _one_line(failure.value)


def test_unwritable_thumbnails_stop_indexing_without_blaming_the_images(tmp_path, data_dir):
    """They used to be recorded as bad files ("cannot write thumbnail") and never retried."""
    root = tmp_path / "catalog"
    files = make_catalog(root, 6)
    thumbs = data_dir / "thumbs"
    thumbs.mkdir(parents=True)
    lib = open_library(Settings.load(data_dir))
    try:
        with read_only(thumbs), pytest.raises(StorageError) as failure:
            lib.index([root])
        assert "cannot write thumbnails" in _one_line(failure.value)
        assert lib.catalog.stats(lib.model_key).images == 0
        report = lib.index()  # writable again: everything is indexed
        assert report.added == len(files) and report.errors == []
    finally:
        lib.close()


def test_a_failed_index_save_leaves_the_old_index_and_no_temp_file(tmp_path):
    with small_disk(tmp_path / "disk", "4m") as disk:
        data_dir = disk / "library"
        synthetic_library(data_dir, 500)
        lib = open_library(Settings.load(data_dir))
        lib.close()
        old = (data_dir / INDEX_FILE).read_bytes()
        synthetic_library(data_dir, 2000, seed=3, start=1000)
        lib = open_library(Settings.load(data_dir))  # caught up in memory
        filler = disk / "filler"
        with open(filler, "wb") as fh:  # take all but a few KB of what is left
            fh.write(bytes(max(0, shutil.disk_usage(disk).free - 8192)))
        try:
            with pytest.raises(StorageError) as failure:
                lib.rebuild_index()
            assert "cannot save the vector index" in _one_line(failure.value)
            assert not [p.name for p in data_dir.iterdir() if p.name.endswith(".tmp")]
            assert (data_dir / INDEX_FILE).read_bytes() == old
            # The index in memory is whole: searches go on.
            assert len(lib.search(SearchRequest([QueryTerm("similar", 1)], k=3)).results) == 3
        finally:
            lib.close()  # warns, does not raise
        filler.unlink()
        assert check_index_on_a_copy(data_dir, tmp_path / "copy").vectors == 2500


def test_exporting_to_a_missing_folder_or_a_full_disk_is_a_clear_error(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"])
    results = search_image(library, files[0], k=3)
    with pytest.raises(StorageError, match="cannot write .*missing.*out.csv"):
        library.export_csv(results, tmp_path / "missing" / "out.csv")
    with small_disk(tmp_path / "disk", "64k") as disk:
        write_image(disk / "filler.png", 1, (400, 400))
        with open(disk / "filler", "wb") as fh:
            fh.write(bytes(max(0, shutil.disk_usage(disk).free - 512)))
        many = results * 200
        with pytest.raises(StorageError):
            library.export_csv(many, disk / "out.csv")
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "filler.png"]


def test_a_duplicates_export_on_a_full_disk_leaves_no_temporary_file(library, tmp_path):
    root = tmp_path / "catalog"
    files = make_catalog(root, 3)
    for i, source in enumerate(files):
        shutil.copyfile(source, root / f"copy_{i}.jpg")
    library.index([root])
    groups = library.duplicates.find().groups
    assert groups
    with small_disk(tmp_path / "disk", "64k") as disk:
        (disk / "dupes.csv").write_text("the previous export\n")
        with open(disk / "filler", "wb") as fh:
            fh.write(bytes(max(0, shutil.disk_usage(disk).free - 512)))
        with pytest.raises(StorageError, match="cannot write"):
            library.duplicates.export_csv(groups * 400, disk / "dupes.csv")
        assert sorted(p.name for p in disk.iterdir()) == ["dupes.csv", "filler"]
        assert (disk / "dupes.csv").read_text() == "the previous export\n"
