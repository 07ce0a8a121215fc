"""Library.index_paths: the watcher's way into the one pipeline, and the scan rules it shares."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from imagegen import make_catalog, write_image
from procutil import subprocess_env, unprivileged_prefix

from visualfinder.ingest.scanner import FileStat


def test_a_move_keeps_its_id_when_both_ends_are_named(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"])
    [old_id] = [library.catalog.id_for_path(str(files[0]))]
    target = tmp_path / "catalog" / "sub" / "moved.jpg"
    target.parent.mkdir()
    os.rename(files[0], target)
    report = library.index_paths([files[0], target])
    assert (report.moved, report.added, report.removed) == (1, 0, 0)
    assert library.catalog.id_for_path(str(target)) == old_id


def test_a_new_file_takes_over_the_image_whose_file_vanished_with_its_content(library, tmp_path):
    chairs, lamps = tmp_path / "chairs", tmp_path / "lamps"
    files = make_catalog(chairs, 2)
    make_catalog(lamps, 1, start_seed=10)
    library.index([chairs, lamps])
    library.products.add_tags(files[0], ["kept"])
    old_id = library.catalog.id_for_path(str(files[0]))
    target = lamps / "moved.jpg"
    shutil.move(files[0], target)
    report = library.index_paths([target])  # only the destination: the source event was not seen
    assert (report.moved, report.added, report.removed) == (1, 0, 0)
    assert library.catalog.id_for_path(str(target)) == old_id
    assert library.catalog.tags_of(old_id) == ["kept"]


def test_a_copy_of_an_image_on_an_unmounted_drive_is_a_copy_not_a_move(library, tmp_path):
    drive, local = tmp_path / "drive", tmp_path / "local"
    files = make_catalog(drive, 2)
    local.mkdir()
    library.index([drive, local])
    shutil.copy(files[0], local / "copy.jpg")
    drive.rename(tmp_path / "unplugged")
    report = library.index_paths([local / "copy.jpg"])
    assert (report.added, report.reused, report.moved) == (1, 1, 0)
    assert library.catalog.id_for_path(str(files[0])) is not None  # kept for when it comes back


def test_a_named_folder_is_walked_and_what_is_gone_below_it_removed(library, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    old = make_catalog(catalog / "lamps", 2, start_seed=10)
    library.index([catalog])
    old[0].unlink()
    write_image(catalog / "lamps" / "desk" / "new.jpg", 20)
    report = library.index_paths([catalog / "lamps"])
    assert (report.added, report.removed, report.unchanged) == (1, 1, 1)


def test_paths_outside_catalog_folders_or_in_hidden_folders_are_ignored(library, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    library.index([catalog])
    outside = write_image(tmp_path / "elsewhere" / "x.jpg", 30)
    hidden = write_image(catalog / ".trash" / "y.jpg", 31)
    temp = write_image(catalog / "z.jpg.part", 32, fmt="JPEG")
    report = library.index_paths([outside, hidden, catalog / ".trash", temp])
    assert not report.changed and library.catalog.stats(library.model_key).ok == 1


def test_files_held_back_hold_back_removals_and_come_back_deferred(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    old_id = library.catalog.id_for_path(str(files[0]))
    target = files[0].with_name("renamed.jpg")
    os.rename(files[0], target)

    def still_writing(stat: FileStat) -> bool:
        return stat.path != str(target)

    report = library.index_paths([files[0], target], accept=still_writing)
    assert sorted(report.deferred) == sorted([str(target), str(files[0])])
    assert report.removed == 0 and library.catalog.id_for_path(str(files[0])) == old_id
    report = library.index_paths(report.deferred)
    assert report.moved == 1 and library.catalog.id_for_path(str(target)) == old_id


def test_indexing_an_empty_mount_point_keeps_the_images_of_the_unmounted_drive(library, tmp_path):
    mount = tmp_path / "mnt"
    make_catalog(mount, 3)
    library.index([mount])
    mount.rename(tmp_path / "drive-contents")
    mount.mkdir()
    report = library.index()
    assert report.removed == 0 and "unmounted" in report.folder_errors[0][1]
    assert library.catalog.stats(library.model_key).ok == 3


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_an_unreadable_subfolder_keeps_its_images_on_rescan(tmp_path, data_dir, library):
    """Unreadable is not deleted. As root, the rescan runs without the DAC capabilities."""
    root = tmp_path / "catalog"
    make_catalog(root, 2)
    write_image(root / "locked" / "inside.jpg", 8)
    library.index([root])
    library.close()
    (root / "locked").chmod(0)
    script = (
        "import sys; from visualfinder.config import Settings; from visualfinder.library.facade import open_library\n"
        "lib = open_library(Settings.load(sys.argv[1]))\n"
        "r = lib.index()\n"
        "print(r.removed, lib.catalog.stats(lib.model_key).ok); [print('F', p, '|', why) for p, why in r.folder_errors]\n"
        "lib.close()\n"
    )
    env = subprocess_env()
    prefix = unprivileged_prefix()
    try:
        proc = subprocess.run([*prefix, sys.executable, "-c", script, str(data_dir)],
                              capture_output=True, text=True, env=env, timeout=180)  # fmt: skip
    finally:
        (root / "locked").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "0 3"
    assert f"F {root / 'locked'} | permission denied" in lines
