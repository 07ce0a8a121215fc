"""The folder watcher with a real watchdog observer and real files: every change reaches the library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from imagegen import make_catalog, product_image, write_image
from searching import search_image
from stalled_reads import stalled_reads
from watchutil import FAST_WATCH, EventLog, wait_until

from visualfinder.errors import FolderNotFoundError
from visualfinder.events import JobProgress, LibraryChanged, WatcherStatus
from visualfinder.ingest import retry
from visualfinder.ingest import watcher as watcher_module
from visualfinder.ingest.imaging import content_hash
from visualfinder.ingest.watcher import Watcher
from visualfinder.library.facade import open_library


@pytest.fixture
def settings(settings):
    return settings.replace(**FAST_WATCH)


@pytest.fixture
def watch(library):
    """Start a watcher on `library` (set up and reconciled when returned); stopped at teardown."""
    started = []

    def _start(lib=None, **kwargs) -> Watcher:
        watcher = Watcher(lib or library, **kwargs)
        started.append(watcher)
        watcher.start()
        assert watcher.wait_idle(30), watcher.message
        return watcher

    yield _start
    for watcher in started:
        assert watcher.stop(30), "the watcher did not stop"


@pytest.fixture
def library_with(settings):
    """A library opened with other settings (e.g. polling); closed at teardown."""
    opened = []

    def _open(**changes):
        lib = open_library(settings.replace(**changes))
        opened.append(lib)
        return lib

    yield _open
    for lib in opened:
        lib.close()


def ids(library, *paths):
    return [library.catalog.id_for_path(str(p)) for p in paths]


def rows_under(library, folder) -> dict:
    return library.catalog.stat_rows_under(str(folder))


# --- new, changed, moved, removed ------------------------------------------------------------


def test_a_new_image_is_searchable_soon_after_it_is_written(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 3)
    library.index([catalog], watched=True)
    watch()
    new = write_image(catalog / "new-chair.jpg", 40)
    assert wait_until(lambda: library.catalog.id_for_path(str(new)))
    top = search_image(library, new, k=1)[0]
    assert top.path == str(new) and top.score > 0.999


def test_a_replaced_image_is_re_embedded_under_the_same_id(library, watch, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"], watched=True)
    watch()
    [image_id] = ids(library, files[0])
    before = library.catalog.embedding_of(image_id, library.model_key)
    write_image(files[0], 99)
    expected = content_hash(files[0].read_bytes())
    assert wait_until(lambda: library.catalog.stat_row(str(files[0])).content_hash == expected)
    assert ids(library, files[0]) == [image_id]
    assert not np.allclose(library.catalog.embedding_of(image_id, library.model_key), before)
    assert search_image(library, files[0], k=1)[0].id == image_id


def test_a_renamed_image_keeps_its_id_embedding_and_tags(library, watch, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"], watched=True)
    library.products.add_tags(files[1], ["oak"])
    [old_id] = ids(library, files[1])
    vector = library.catalog.embedding_of(old_id, library.model_key)
    watcher = watch()
    events = EventLog(library)
    renamed = files[1].with_name("oak-chair.jpg")
    os.rename(files[1], renamed)
    assert wait_until(lambda: library.catalog.id_for_path(str(renamed)))
    assert watcher.wait_idle(20)
    assert ids(library, renamed, files[1]) == [old_id, None]
    assert library.catalog.tags_of(old_id) == ["oak"]
    np.testing.assert_array_equal(library.catalog.embedding_of(old_id, library.model_key), vector)
    assert (events.total("moved"), events.total("added"), events.total("removed")) == (1, 0, 0)


def test_a_move_between_two_watched_folders_keeps_the_id(library, watch, tmp_path):
    chairs, lamps = tmp_path / "chairs", tmp_path / "lamps"
    files = make_catalog(chairs, 2)
    make_catalog(lamps, 2, start_seed=10)
    library.index([chairs, lamps], watched=True)
    library.products.add_tags(files[0], ["misfiled"])
    [old_id] = ids(library, files[0])
    watch()
    target = lamps / "actually-a-lamp.jpg"
    shutil.move(files[0], target)
    assert wait_until(lambda: library.catalog.id_for_path(str(target)))
    assert wait_until(lambda: library.catalog.id_for_path(str(files[0])) is None)
    assert ids(library, target) == [old_id]
    record = library.catalog.records([old_id])[old_id]
    assert record.folder_id == library.catalog.folder_by_path(str(lamps)).id
    assert record.tags == ["misfiled"]
    assert library.catalog.stats(library.model_key).ok == 4


def test_a_deleted_image_leaves_the_results(library, watch, tmp_path):
    files = make_catalog(tmp_path / "catalog", 4)
    library.index([tmp_path / "catalog"], watched=True)
    query = tmp_path / "query.jpg"
    shutil.copy(files[2], query)
    watch()
    files[2].unlink()
    assert wait_until(lambda: library.catalog.id_for_path(str(files[2])) is None)
    paths = [r.path for r in search_image(library, query, k=10)]
    assert str(files[2]) not in paths and len(paths) == 3
    assert len(library.vector_index) == 3


def test_a_deleted_folder_removes_its_images(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 2)
    make_catalog(catalog / "lamps" / "desk", 3, start_seed=20)
    library.index([catalog], watched=True)
    watch()
    shutil.rmtree(catalog / "lamps")
    assert wait_until(lambda: not rows_under(library, catalog / "lamps"))
    assert len(rows_under(library, catalog)) == 2 and len(library.vector_index) == 2


def test_a_folder_moved_out_of_the_watched_tree_counts_as_removed(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 2)
    make_catalog(catalog / "old-season", 3, start_seed=20)
    library.index([catalog], watched=True)
    watch()
    os.rename(catalog / "old-season", tmp_path / "archive")
    assert wait_until(lambda: not rows_under(library, catalog / "old-season"))
    assert library.catalog.stats(library.model_key).ok == 2


def test_a_renamed_subfolder_keeps_the_ids_of_its_images(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    files = make_catalog(catalog / "lamps", 3, start_seed=20)
    library.index([catalog], watched=True)
    old_ids = ids(library, *files)
    watcher = watch()
    events = EventLog(library)
    os.rename(catalog / "lamps", catalog / "lighting")
    moved = [catalog / "lighting" / f.name for f in files]
    assert wait_until(lambda: all(ids(library, *moved)))
    assert watcher.wait_idle(20)
    assert ids(library, *moved) == old_ids
    assert events.total("added") == 0 and events.total("removed") == 0


def test_a_folder_moved_in_is_indexed_in_one_batch(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    library.index([catalog], watched=True)
    incoming = tmp_path / "incoming"
    make_catalog(incoming / "nested", 4, start_seed=30)
    watcher = watch()
    events = EventLog(library)
    os.rename(incoming, catalog / "new-arrivals")
    assert wait_until(lambda: len(rows_under(library, catalog / "new-arrivals")) == 4)
    assert watcher.wait_idle(20)
    assert [r.added for r in events.reports()] == [4]


def test_a_folder_added_through_a_symlink_is_watched_under_that_name(library, watch, tmp_path):
    real = tmp_path / "disk" / "catalog"
    make_catalog(real, 1)
    link = tmp_path / "catalog"
    link.symlink_to(real, target_is_directory=True)
    library.index([link], watched=True)
    watch()
    write_image(real / "new.jpg", 42)
    assert wait_until(lambda: library.catalog.id_for_path(str(link / "new.jpg")))
    assert library.catalog.id_for_path(str(real / "new.jpg")) is None


def test_metadata_sidecars_apply_as_they_change_and_to_images_added_later(library, watch, tmp_path):
    sofas = tmp_path / "catalog" / "sofas"
    other = write_image(sofas / "other.jpg", 2)
    library.index([tmp_path / "catalog"], watched=True)
    watch()
    (sofas / "products.csv").write_text("file,title\nother.jpg,Red sofa\nlater.jpg,Later sofa\n")
    assert wait_until(lambda: library.record(other).title == "Red sofa")
    later = write_image(sofas / "later.jpg", 3)  # its row in the unchanged products.csv applies
    assert wait_until(lambda: library.catalog.id_for_path(str(later)) and library.record(later).title)
    assert library.record(later).title == "Later sofa"
    photo = write_image(sofas / "photo.jpg", 1)
    (sofas / "photo.jpg.json").write_text(json.dumps({"title": "Green sofa", "tags": "green"}))
    assert wait_until(lambda: library.catalog.id_for_path(str(photo)) and library.record(photo).tags)
    assert (library.record(photo).title, library.record(photo).tags) == ("Green sofa", ["green"])


# --- bursts, names, partial writes -----------------------------------------------------------


def test_two_thousand_files_dropped_at_once_are_all_indexed_in_a_few_batches(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    library.index([catalog], watched=True)
    sources = make_catalog(tmp_path / "sources", 20)
    watch()
    events = EventLog(library)
    for copy in range(100):  # copies reuse their twin's embedding: the burst, not the model, is tested
        folder = catalog / f"drop-{copy // 25}"
        folder.mkdir(exist_ok=True)
        for source in sources:
            shutil.copyfile(source, folder / f"{copy:03d}-{source.name}")
    assert wait_until(lambda: library.catalog.stats(library.model_key).ok == 2000, timeout=90)
    assert wait_until(lambda: len(library.vector_index) == 2000)  # mirrored right after each commit
    assert wait_until(lambda: events.total("added") == 2000)  # reported once each batch is done
    assert 1 <= len(events.reports()) < 20  # batched, not one run per file
    assert not any(r.errors for r in events.reports())


def test_temporary_hidden_and_non_image_names_are_ignored(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    library.index([catalog], watched=True)
    watcher = watch()
    for name in ("draft.jpg.part", "photo.jpg.crdownload", "photo.jpg~", "~$locked.jpg", ".hidden.jpg",
                 ".cache/inside.jpg", "notes.txt"):  # fmt: skip
        write_image(catalog / name, 5, fmt="JPEG")
    marker = write_image(catalog / "marker.jpg", 6)
    assert wait_until(lambda: library.catalog.id_for_path(str(marker)))
    assert watcher.wait_idle(20)  # the names written before the marker were looked at with it
    assert sorted(os.path.basename(p) for p in rows_under(library, catalog)) == [
        "marker.jpg",
        "product_0000.jpg",
    ]


def test_an_editor_saving_through_a_temporary_file_makes_one_update(library, watch, tmp_path):
    files = make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"], watched=True)
    [image_id] = ids(library, files[0])
    watcher = watch()
    events = EventLog(library)
    # Save style 1: write a temporary file, rename it over the original.
    temp = files[0].with_name(files[0].name + ".tmp")
    write_image(temp, 71, fmt="JPEG")
    os.replace(temp, files[0])
    expected = content_hash(files[0].read_bytes())
    assert wait_until(lambda: library.catalog.stat_row(str(files[0])).content_hash == expected)
    assert watcher.wait_idle(20)
    # Save style 2: keep the original as a backup~, write the new file under its name.
    os.rename(files[0], files[0].with_name(files[0].name + "~"))
    write_image(files[0], 72)
    expected = content_hash(files[0].read_bytes())
    assert wait_until(lambda: library.catalog.stat_row(str(files[0])).content_hash == expected)
    assert watcher.wait_idle(20) and ids(library, files[0]) == [image_id]
    assert (events.total("updated"), events.total("added"), events.total("removed")) == (2, 0, 0)


@pytest.mark.parametrize("polling", ["never", "always"])
def test_a_file_being_written_is_read_only_once_complete(library_with, watch, tmp_path, polling):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    # Writes every 0.3 s: each pause outlasts the debounce, so only the stable-size rule holds it
    # back; its 3 s leave a loaded machine ten times the pause before a piece would count as the end.
    lib = library_with(watch_polling=polling, watch_stable_s=3.0)
    lib.index([catalog], watched=True)
    watcher = watch(lib)
    assert watcher.folders == {str(catalog): "polling" if polling == "always" else "watching"}
    events = EventLog(lib)
    buffer = tmp_path / "big.jpg"
    product_image(3, (1200, 900)).save(buffer, "JPEG", quality=95)
    data = buffer.read_bytes()
    target = catalog / "arriving.jpg"
    with open(target, "wb") as fh:
        for start in range(0, len(data), len(data) // 5 + 1):
            fh.write(data[start : start + len(data) // 5 + 1])
            fh.flush()
            time.sleep(0.3)
    assert wait_until(lambda: lib.catalog.id_for_path(str(target)))
    assert watcher.wait_idle(20)
    assert lib.catalog.stat_row(str(target)).content_hash == content_hash(data)
    assert events.errors_for(target) == []
    assert (events.total("added"), events.total("updated")) == (1, 0)


def test_a_file_whose_mtime_looks_old_still_waits_for_a_stable_size(library, tmp_path):
    """On a share whose clock lags, a file being written has an mtime far in our past."""
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    library.index([catalog], watched=True)
    target = catalog / "half_written.jpg"
    target.write_bytes(b"\xff\xd8\xff" + bytes(1000))
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(target, ns=(an_hour_ago, an_hour_ago))
    watcher = Watcher(library)  # not started: its rule for one file, as a batch applies it
    report = library.index_paths([target], accept=watcher._accept)
    assert report.deferred == [str(target)] and report.errors == []
    assert library.catalog.id_for_path(str(target)) is None


def test_a_file_changed_again_and_again_ends_with_its_last_content(library, watch, tmp_path):
    files = make_catalog(tmp_path / "catalog", 1)
    library.index([tmp_path / "catalog"], watched=True)
    [image_id] = ids(library, files[0])
    watcher = watch()
    for seed in range(100, 110):  # rewritten while earlier versions are being indexed
        write_image(files[0], seed, size=(640, 480))
        time.sleep(0.12)
    final = content_hash(files[0].read_bytes())
    assert wait_until(lambda: library.catalog.stat_row(str(files[0])).content_hash == final)
    assert watcher.wait_idle(20)
    assert len(rows_under(library, tmp_path / "catalog")) == 1 and ids(library, files[0]) == [image_id]
    top = search_image(library, files[0], k=1)[0]
    assert top.id == image_id and top.score > 0.999  # the vector is the last version's


# --- start, stop, folders that come and go ----------------------------------------------------


def test_changes_made_while_not_watching_are_applied_on_start(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    files = make_catalog(catalog, 4)
    library.index([catalog], watched=True)
    library.products.add_tags(files[0], ["kept"])
    old_ids = ids(library, *files)
    os.rename(files[0], catalog / "renamed.jpg")
    files[1].unlink()
    write_image(files[2], 55, size=(400, 300))
    write_image(catalog / "new.jpg", 66)
    events = EventLog(library)
    watch()
    assert ids(library, catalog / "renamed.jpg", files[1], files[2]) == [old_ids[0], None, old_ids[2]]
    assert library.catalog.tags_of(old_ids[0]) == ["kept"]
    assert library.catalog.stat_row(str(files[2])).content_hash == content_hash(files[2].read_bytes())
    assert ids(library, catalog / "new.jpg")[0] is not None
    totals = [events.total(field) for field in ("moved", "removed", "updated", "added")]
    assert totals == [1, 1, 1, 1]


def test_a_watched_folder_that_disappears_keeps_its_images_and_is_caught_up_when_it_returns(
    library, watch, tmp_path
):
    drive = tmp_path / "drive"
    files = make_catalog(drive, 3)
    library.index([drive], watched=True)
    watcher = watch()
    events = EventLog(library)
    away = tmp_path / "elsewhere"
    os.rename(drive, away)
    assert wait_until(lambda: watcher.folders[str(drive)] == "missing")
    assert watcher.state == "folder-missing" and str(drive) in watcher.message
    assert library.catalog.stats(library.model_key).ok == 3
    write_image(away / "added-meanwhile.jpg", 70)
    (away / files[1].name).unlink()
    os.rename(away, drive)
    assert wait_until(lambda: library.catalog.id_for_path(str(drive / "added-meanwhile.jpg")))
    assert wait_until(lambda: library.catalog.id_for_path(str(files[1])) is None)
    assert wait_until(lambda: watcher.state == "watching")
    assert events.states()[0] == "folder-missing" and watcher.folders == {str(drive): "watching"}


def test_an_empty_mount_point_left_by_an_unmounted_drive_keeps_the_images(library, watch, tmp_path):
    mount = tmp_path / "mnt"
    files = make_catalog(mount, 3)
    library.index([mount], watched=True)
    old_ids = ids(library, *files)
    watcher = watch()
    os.rename(mount, tmp_path / "drive-contents")  # unmounted: the files go, an empty folder stays
    mount.mkdir()
    assert wait_until(lambda: watcher.folders[str(mount)] == "missing")
    assert "unmounted" in watcher.message
    assert library.catalog.stats(library.model_key).ok == 3
    mount.rmdir()
    os.rename(tmp_path / "drive-contents", mount)  # mounted again
    assert wait_until(lambda: watcher.folders[str(mount)] == "watching")
    assert watcher.wait_idle(20) and ids(library, *files) == old_ids


def test_a_watched_folder_emptied_by_the_user_is_emptied_in_the_library(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    files = make_catalog(catalog, 3)
    library.index([catalog], watched=True)
    watcher = watch()
    for file in files:
        file.unlink()
    assert wait_until(lambda: library.catalog.stats(library.model_key).ok == 0)
    assert watcher.wait_idle(20) and watcher.folders == {str(catalog): "watching"}


def test_symlink_loops_neither_hang_nor_duplicate(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 2)
    library.index([catalog], watched=True)
    watch()
    (catalog / "loop").symlink_to(catalog, target_is_directory=True)
    pack = tmp_path / "pack"
    make_catalog(pack, 2, start_seed=40)
    (pack / "again").symlink_to(pack, target_is_directory=True)
    (pack / "up").symlink_to(catalog, target_is_directory=True)
    os.rename(pack, catalog / "pack")
    assert wait_until(lambda: len(rows_under(library, catalog / "pack")) == 2)
    marker = write_image(catalog / "marker.jpg", 41)
    assert wait_until(lambda: library.catalog.id_for_path(str(marker)))
    paths = sorted(rows_under(library, catalog))
    assert len(paths) == 5 and not any(part in p for p in paths for part in ("/loop/", "/again/", "/up/"))


def test_polling_sees_new_changed_moved_and_removed_files(library_with, watch, tmp_path):
    catalog = tmp_path / "share"
    files = make_catalog(catalog, 3)
    lib = library_with(watch_polling="always")
    lib.index([catalog], watched=True)
    watcher = watch(lib)
    assert watcher.state == "polling" and "watch_polling" in watcher.message
    new = write_image(catalog / "new.jpg", 50)
    assert wait_until(lambda: lib.catalog.id_for_path(str(new)))
    [old_id] = ids(lib, files[0])
    os.rename(files[0], catalog / "renamed.jpg")
    assert wait_until(lambda: lib.catalog.id_for_path(str(catalog / "renamed.jpg")) == old_id)
    files[1].unlink()
    assert wait_until(lambda: lib.catalog.id_for_path(str(files[1])) is None)


def test_a_file_skipped_for_a_transient_reason_is_tried_again_without_any_event(
    library_with, watch, tmp_path, monkeypatch
):
    """A stalled share sends no file event when it recovers: the watcher itself looks again when
    each backoff ends, and indexes the file once it reads."""
    monkeypatch.setattr(retry, "BACKOFF_BASE_S", 0.3)  # 0.3 s, 0.6 s, 1.2 s... instead of minutes
    monkeypatch.setattr(watcher_module, "_SKIP_RETRY_SPACING_S", 0.2)
    root = tmp_path / "share"
    root.mkdir()
    stalled = write_image(root / "stalled.jpg", 3)
    lib = library_with(file_time_limit_s=1.0, decode_workers=1)

    def attempts() -> int:
        return lib.catalog.stat_row(str(stalled)).attempts

    with stalled_reads("stalled.jpg"):
        lib.index([root], watched=True)
        assert attempts() == 1
        watch(lib)  # its start-up reconcile is the second try; later ones come from the backoff
        assert wait_until(lambda: attempts() >= 4, timeout=60), attempts()
    assert wait_until(lambda: lib.catalog.stat_row(str(stalled)).status == "ok", timeout=60)
    assert lib.status().skipped == [] and lib.catalog.stats(lib.model_key).ok == 1


def test_a_transient_skip_in_a_missing_folder_is_left_alone(library_with, watch, tmp_path, monkeypatch):
    """An unmounted drive keeps its images and its skipped files: a retry queued there would
    read as a deletion."""
    monkeypatch.setattr(retry, "BACKOFF_BASE_S", 0.1)
    monkeypatch.setattr(watcher_module, "_SKIP_RETRY_SPACING_S", 0.1)
    drive = tmp_path / "drive"
    make_catalog(drive, 2)
    stalled = write_image(drive / "stalled.jpg", 3)
    lib = library_with(file_time_limit_s=1.0, decode_workers=1)
    with stalled_reads("stalled.jpg"):
        lib.index([drive], watched=True)
        watcher = watch(lib)
    os.rename(drive, tmp_path / "elsewhere")
    assert wait_until(lambda: watcher.folders[str(drive)] == "missing")
    time.sleep(1.0)  # ten retry periods: long enough for a wrongly queued retry to have run
    row = lib.catalog.stat_row(str(stalled))
    assert row is not None and row.status == "error" and row.error_kind == retry.TRANSIENT
    assert lib.catalog.stats(lib.model_key).ok == 2


def test_a_busy_library_delays_changes_without_losing_them(library, watch, tmp_path, data_dir):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    library.index([catalog], watched=True)
    watcher = watch()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
         "lock.acquire(); print('locked', flush=True); sys.stdin.read()", str(data_dir / "writer.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        new = write_image(catalog / "new.jpg", 60)
        assert wait_until(lambda: watcher.state == "busy")
        assert "another visualfinder process" in watcher.message
        assert library.catalog.id_for_path(str(new)) is None
    finally:
        holder.stdin.close()
        holder.wait(20)
    assert wait_until(lambda: library.catalog.id_for_path(str(new)))
    assert wait_until(lambda: watcher.state == "watching")


def test_stopping_mid_batch_keeps_the_library_whole_and_the_next_start_finishes(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    library.index([catalog], watched=True)
    library.embedder._batch_size = 8
    watcher = watch()
    make_catalog(catalog, 120, start_seed=200)
    assert wait_until(lambda: library.catalog.stats(library.model_key).ok >= 8)
    assert watcher.stop(30) and watcher.state == "stopped" and not watcher.running
    assert library.catalog.integrity_ok()
    assert len(library.vector_index) == library.catalog.stats(library.model_key).ok
    watch()
    assert library.catalog.stats(library.model_key).ok == 120 and len(library.vector_index) == 120


def test_a_stopped_watcher_catches_up_when_started_again(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    library.index([catalog], watched=True)
    watcher = watch()
    assert watcher.stop(30)
    meanwhile = write_image(catalog / "meanwhile.jpg", 64)
    watcher.start()
    assert watcher.wait_idle(30) and library.catalog.id_for_path(str(meanwhile))
    live = write_image(catalog / "live.jpg", 65)
    assert wait_until(lambda: library.catalog.id_for_path(str(live)))
    assert watcher.folders == {str(catalog): "watching"}


def test_the_watcher_follows_folders_marked_watched_while_it_runs(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 2)
    library.index([catalog])
    watcher = watch()
    assert watcher.folders == {} and watcher.state == "watching"
    library.set_watched(catalog, True)
    assert wait_until(lambda: watcher.folders == {str(catalog): "watching"})
    new = write_image(catalog / "new.jpg", 61)
    assert wait_until(lambda: library.catalog.id_for_path(str(new)))
    library.set_watched(catalog, False)
    assert wait_until(lambda: watcher.folders == {})


def test_every_watcher_change_reaches_the_outbox(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    files = make_catalog(catalog, 2)
    library.catalog.enable_outbox()
    library.index([catalog], watched=True)
    watch()
    new = write_image(catalog / "new.jpg", 62)
    assert wait_until(lambda: library.catalog.id_for_path(str(new)))
    [new_id, gone_id] = ids(library, new, files[0])
    files[0].unlink()
    assert wait_until(lambda: library.catalog.id_for_path(str(files[0])) is None)
    ops = library.catalog.conn.execute("SELECT op, image_id FROM outbox ORDER BY id").fetchall()
    assert ("upsert", new_id) in ops and ops[-1] == ("delete", gone_id)


def test_the_gui_hears_what_the_watcher_does(library, watch, tmp_path):
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 1)
    library.index([catalog], watched=True)
    events = EventLog(library)
    watcher = watch()
    write_image(catalog / "new.jpg", 63)
    assert wait_until(lambda: events.reports())
    watcher.stop(30)
    statuses = [e for e in events.events if isinstance(e, WatcherStatus)]
    assert statuses[0].state == "starting"
    assert [s.state for s in statuses if s.state != "starting"] == ["watching", "stopped"]
    assert statuses[-2].folders == ((str(catalog), "watching"),)
    progress = [e.progress for e in events.events if isinstance(e, JobProgress) and e.source == "watcher"]
    assert progress and progress[-1].done == progress[-1].total == 1
    changed = [e for e in events.events if isinstance(e, LibraryChanged)]
    assert [(e.source, e.report.added) for e in changed] == [("watcher", 1)]


def test_watching_a_folder_that_is_not_in_the_catalog_is_refused(library, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FolderNotFoundError, match="not a catalog folder"):
        Watcher(library, [tmp_path / "elsewhere"])
