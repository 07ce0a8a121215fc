"""Nothing hangs and nothing explodes: the per-file time limit, blocking files, memory bombs.

The time limit is tested with reads that block by construction, never with work that is merely
slow (which a fast machine finishes in time): a read from a FIFO that has no writer, and files
whose reads stall (tests/stalled_reads.py). The bomb checks refuse before decoding: their
messages come from the checks that run first; the time bounds below are only safety nets.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from hostile_files import encode, gif_frame_bomb, many_scans_jpeg, with_sof_size
from imagegen import make_catalog, product_image, write_image
from PIL import Image
from stalled_reads import stalled_reads

from visualfinder.errors import Cancelled, ImageDecodeError
from visualfinder.ingest.imaging import decode_image, read_image_file
from visualfinder.ingest.scanner import FileStat, ScanPlan
from visualfinder.ingest.workpool import TaskTimedOut, WorkerPool
from visualfinder.jobs import CancelToken


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    yield path
    try:  # a writer that comes and goes releases a thread still blocked opening it for reading
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # ENXIO: nobody is reading
        pass


def _blocking_read(path) -> bytes:
    with open(path, "rb") as fh:  # blocks until a writer opens the FIFO: a real hang
        return fh.read()


def test_a_task_past_its_time_limit_is_given_up_and_its_worker_replaced(fifo):
    with WorkerPool(1, "test") as pool:
        stuck = pool.submit(_blocking_read, fifo)
        after = [pool.submit(sum, [i, 1]) for i in range(3)]
        started = time.monotonic()
        with pytest.raises(TaskTimedOut):
            pool.result(stuck, limit=0.3)
        assert time.monotonic() - started < 30  # a safety net: the FIFO never delivers
        # The only worker is stuck: the tasks queued behind it run on its replacement.
        assert [pool.result(t, limit=5) for t in after] == [1, 2, 3]
    # shutdown returned although the stuck thread still waits in open()


def test_time_limit_counts_from_the_start_of_the_task_not_its_queueing():
    gate = threading.Event()
    with WorkerPool(1, "test") as pool:
        first = pool.submit(gate.wait, 60)
        second = pool.submit(sum, [1, 2])
        time.sleep(1.0)  # `second` waits in the queue at least this long: longer than its limit
        gate.set()
        assert pool.result(first, limit=60) is True
        assert pool.result(second, limit=0.5) == 3  # queued over 1 s, ran for microseconds


def test_waiting_on_a_stuck_task_stops_when_cancelled(fifo):
    cancel = CancelToken()
    with WorkerPool(1, "test") as pool:
        stuck = pool.submit(_blocking_read, fifo)
        threading.Timer(0.2, cancel.cancel).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            pool.result(stuck, limit=60, cancel=cancel)
        assert time.monotonic() - started < 30  # a safety net: before the 60 s limit
        pool.shutdown(wait=True, timeout=0.5)


def test_errors_of_a_task_reach_the_caller():
    with WorkerPool(2, "test") as pool, pytest.raises(ZeroDivisionError):
        pool.result(pool.submit(divmod, 1, 0), limit=5)


def test_a_fifo_that_replaced_a_scanned_file_is_refused_without_blocking(library, tmp_path, fifo):
    # The scan saw a regular file; by the time it is read, a FIFO with no writer is in its place.
    done = []
    reader = threading.Thread(target=lambda: done.append(_read_reason(fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert done == ["not a regular file (device, pipe or socket)"]

    root = tmp_path / "catalog"
    good = make_catalog(root, 3)
    swapped = root / "swapped.jpg"
    os.mkfifo(swapped)
    folder = library.add_folders([root])[0]
    plan = ScanPlan(new=[FileStat(str(p), p.stat().st_size, p.stat().st_mtime_ns, folder.id) for p in good]
                    + [FileStat(str(swapped), 1234, 1, folder.id)])  # fmt: skip
    report = library.indexer.pipeline().run(plan)
    assert report.added == 3
    assert [(e.path, e.reason) for e in report.errors] == [
        (str(swapped), "not a regular file (device, pipe or socket)")
    ]


def _read_reason(path) -> str:
    try:
        read_image_file(path)
    except ImageDecodeError as exc:
        return exc.reason
    return "read"


def test_a_slow_file_is_skipped_after_the_time_limit_and_the_run_goes_on(reopen, tmp_path):
    root = tmp_path / "catalog"
    good = make_catalog(root, 6)
    write_image(root / "slow.jpg", 99)
    # Its read blocks until the test ends (stalled_reads), whatever the machine's speed; the
    # limit is generous for the good files, which a loaded machine decodes in milliseconds.
    lib = reopen(file_time_limit_s=5.0, decode_workers=1)
    started = time.monotonic()
    with stalled_reads("slow.jpg"):
        report = lib.index([root])
    seconds = time.monotonic() - started
    assert report.added == len(good)
    assert [(os.path.basename(e.path), e.reason, e.kind) for e in report.errors] == [
        ("slow.jpg", "took too long to read and decode (over 5 s); tried again on later scans", "transient")
    ]
    assert lib.catalog.stat_row(str(root / "slow.jpg")).status == "error"
    print(f"indexed {len(good)} images and gave up on the slow one in {seconds:.1f}s")


def test_jpeg_bombs_aimed_at_memory_and_time_are_refused_before_decoding():
    progressive = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG", progressive=True)
    with pytest.raises(
        ImageDecodeError, match="too large to decode safely .40000x40000 pixels in a progressive"
    ):
        decode_image(with_sof_size(progressive, 40000, 40000))
    # The scan count is checked before libjpeg decodes anything (minutes for this file).
    with pytest.raises(ImageDecodeError, match=r"too many scans \(5\d\d\d\)"):
        decode_image(many_scans_jpeg(1024, 5000))
    # A baseline JPEG of that claimed size is decoded at its draft size, as before.
    baseline = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    decoded = decode_image(with_sof_size(baseline, 20000, 20000), min_side=256)
    assert (decoded.width, decoded.height) == (20000, 20000) and max(decoded.image.size) <= 2500


def test_a_gif_frame_claiming_gigapixels_is_refused_before_pillow_allocates_it():
    """Pillow fills such a frame while opening the file: 4.3 GB from a few dozen bytes."""
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="too large to decode safely"):
        decode_image(gif_frame_bomb(65535, 65535))
    assert time.perf_counter() - started < 30  # a safety net: filling 4.3 GB took minutes or the OOM killer


def test_a_real_progressive_photo_is_still_decoded():
    data = encode(product_image(5, (3000, 2000)), "JPEG", progressive=True, quality=85)
    decoded = decode_image(data, min_side=256)
    assert (decoded.width, decoded.height) == (3000, 2000)


@pytest.mark.parametrize("size", [(65000, 1), (1, 65000), (30000, 10)])
def test_an_extreme_strip_is_embedded_without_a_giant_resize(library, size):
    image = Image.new("RGB", size, (200, 40, 40))
    started = time.perf_counter()
    tensor = library.embedder.preprocess(image)
    assert (
        time.perf_counter() - started < 30
    )  # a safety net: a 16-gigapixel intermediate took minutes or the OOM killer
    assert tuple(tensor.shape) == (3, library.embedder.image_size, library.embedder.image_size)


def test_cutting_a_strip_for_the_model_keeps_what_it_sees(library):
    embedder = library.embedder
    for size in [(1000, 100), (100, 1000), (3100, 97)]:  # up to 32:1: untouched
        image = product_image(9, size)
        assert (embedder.preprocess(image) == embedder._transform(image)).all()
    for size in [(4000, 100), (97, 3500)]:  # past 32:1: the same centre, resampled a little apart
        image = product_image(9, size)
        cut, full = embedder.preprocess(image).flatten(), embedder._transform(image).flatten()
        assert float(cut @ full / (cut.norm() * full.norm())) > 0.98


def test_identical_files_decoded_at_once_share_one_thumbnail_without_a_race(reopen, tmp_path):
    root = tmp_path / "copies"
    original = write_image(root / "original.jpg", 77)
    for i in range(40):
        (root / f"copy_{i:02d}.jpg").write_bytes(original.read_bytes())
    lib = reopen(decode_workers=4, batch_size=64)
    report = lib.index([root])
    assert report.errors == [] and report.added + report.reused == 41
    thumbs = {
        lib.catalog.records([i])[i].thumb_path for i in lib.catalog.embedded_ids(lib.model_key).tolist()
    }
    assert len(thumbs) == 1 and all(os.path.isfile(t) for t in thumbs)
    assert not [p for p in (lib.thumbs_dir).rglob("*.tmp")]
