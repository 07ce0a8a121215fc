"""Decoding in worker processes (ingest/process_pool.py) and the CPU-testable GPU decisions.

The process backend must index exactly what the thread backend indexes (same vectors, same
thumbnails), and keep the pipeline's guarantees: a decoder process that crashes or blocks
costs its file only, and a cancelled run leaves a consistent catalog. Faults are built in
(tests/decode_faults.py), never left to the machine's speed.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from decode_faults import BLOCK_NAME, CRASH_CODE, CRASH_NAME, install
from imagegen import make_catalog, product_image, write_image
from PIL import Image

from visualfinder.errors import SettingsError
from visualfinder.ingest import gpu_decode
from visualfinder.ingest.decoders import PROCESS_MIN_FILES, choose_decode_backend
from visualfinder.ingest.scanner import FileStat, ScanPlan, scan
from visualfinder.jobs import CancelToken
from visualfinder.models import gpu
from visualfinder.models.pixels import apply_recipe

# --- the process backend through the library ----------------------------------------------


def _catalog(root, count=12):
    files = make_catalog(root, count)
    write_image(root / "wide.png", 901, (900, 200))  # a resize and crop off the centre
    write_image(root / "tall.webp", 902, (150, 500))
    Image.fromarray(np.asarray(product_image(903, (300, 300)).convert("L"))).save(root / "grey.png")
    (root / "text.jpg").write_bytes(b"not an image at all")
    return files


def _vectors(lib) -> dict[str, np.ndarray]:
    ids, vectors = [], []
    for chunk_ids, chunk in lib.catalog.iter_embeddings(lib.embedder.key):
        ids += [int(i) for i in chunk_ids]
        vectors.append(chunk)
    records = lib.catalog.records(ids)
    return {os.path.basename(records[i].path): v for i, v in zip(ids, np.vstack(vectors), strict=True)}


def _thumbs(lib) -> dict[str, bytes]:
    rows = lib.catalog.records(lib.catalog.embedded_ids(lib.embedder.key).tolist())
    return {os.path.basename(r.path): open(r.thumb_path, "rb").read() for r in rows.values()}


def test_processes_index_the_same_vectors_and_thumbnails_as_threads(reopen, tmp_path):
    root = tmp_path / "catalog"
    _catalog(root)
    results = {}
    for backend in ("threads", "processes"):
        lib = reopen(data_dir=tmp_path / f"data-{backend}", decode_backend=backend, decode_workers=2)
        report = lib.index([root])
        assert (report.added, [os.path.basename(e.path) for e in report.errors]) == (15, ["text.jpg"])
        results[backend] = (
            _vectors(lib),
            _thumbs(lib),
            [(f.path, f.reason, f.kind) for f in lib.catalog.skipped_files()],
        )
    threads, processes = results["threads"], results["processes"]
    assert sorted(processes[0]) == sorted(threads[0])
    for name, vector in threads[0].items():
        np.testing.assert_array_equal(processes[0][name], vector, err_msg=name)
    assert processes[1] == threads[1]
    assert [(reason, kind) for _, reason, kind in processes[2]] == [(r, k) for _, r, k in threads[2]]


def _run_with_faults(lib, roots, cancel=None, progress=None, hooks=install):
    """Index through the library's pipeline with the fault hooks in every decoder process."""
    pipeline = lib.indexer.pipeline()
    pipeline.process_initializer = hooks
    with lib.live.writing():
        plan = scan(lib.catalog, roots, lib.embedder.key)
        kwargs = {} if progress is None else {"progress": progress}
        return pipeline.run(plan, cancel=cancel, **kwargs)


def test_a_decoder_process_that_crashes_costs_its_file_and_the_run_goes_on(reopen, tmp_path):
    root = tmp_path / "catalog"
    good = make_catalog(root, 8)
    write_image(root / CRASH_NAME, 77)
    lib = reopen(decode_backend="processes", decode_workers=1)
    report = _run_with_faults(lib, lib.add_folders([root]))
    assert report.added == len(good)
    assert [(os.path.basename(e.path), e.reason) for e in report.errors] == [
        (CRASH_NAME, f"the decoder process stopped while decoding this file (exit code {CRASH_CODE}); "
                     "tried again on later scans"),
    ]  # fmt: skip
    assert lib.catalog.stat_row(str(root / CRASH_NAME)).status == "error"
    # With one worker, the files after the crash were decoded by its replacement.
    assert lib.catalog.count_embedded(lib.embedder.key) == len(good)


def test_when_no_decoder_process_can_start_again_the_threads_decode(reopen, tmp_path):
    root = tmp_path / "catalog"
    good = make_catalog(root, 8)
    write_image(root / CRASH_NAME, 77)
    lib = reopen(decode_backend="processes", decode_workers=1)
    folder = lib.add_folders([root])[0]
    # The crash first, so every good file comes after the only worker is gone for good.
    plan = ScanPlan(new=[FileStat(str(p), p.stat().st_size, p.stat().st_mtime_ns, folder.id)
                         for p in [root / CRASH_NAME, *good]])  # fmt: skip
    pipeline = lib.indexer.pipeline()
    pipeline.process_initializer = functools.partial(install, str(tmp_path / "no-restart"))
    with lib.live.writing():
        report = pipeline.run(plan)
    assert (tmp_path / "no-restart").exists()  # the replacement did exit at start
    assert report.added == len(good)
    assert [os.path.basename(e.path) for e in report.errors] == [CRASH_NAME]


def test_a_decoder_process_that_blocks_is_stopped_at_the_time_limit(reopen, tmp_path):
    root = tmp_path / "catalog"
    good = make_catalog(root, 6)
    write_image(root / BLOCK_NAME, 78)
    lib = reopen(decode_backend="processes", decode_workers=1, file_time_limit_s=2.0)
    report = _run_with_faults(lib, lib.add_folders([root]))
    assert report.added == len(good)
    assert [(os.path.basename(e.path), e.reason) for e in report.errors] == [
        (BLOCK_NAME, "took too long to read and decode (over 2 s); tried again on later scans")
    ]


def test_cancelling_a_process_decoded_run_leaves_a_consistent_catalog(reopen, tmp_path):
    root = tmp_path / "catalog"
    files = make_catalog(root, 40)
    write_image(root / BLOCK_NAME, 79)  # still in a worker when the cancel comes, at the latest
    lib = reopen(decode_backend="processes", decode_workers=2, batch_size=4, file_time_limit_s=60.0)
    cancel = CancelToken()

    def progress(p):
        if p.phase == "indexing" and p.done >= 8:
            cancel.cancel()

    report = _run_with_faults(lib, lib.add_folders([root]), cancel=cancel, progress=progress)
    assert report.cancelled
    embedded = lib.catalog.count_embedded(lib.embedder.key)
    assert 0 < embedded < len(files)
    ok_rows = [r for r in lib.catalog.stat_rows_under(str(root)).values() if r.has_embedding]
    assert len(ok_rows) == embedded == len(lib.live.engine.index)
    # The next run picks up where this one stopped.
    report = lib.index([root])
    assert lib.catalog.count_embedded(lib.embedder.key) == len(files) + 1
    assert report.added == len(files) + 1 - embedded


def test_the_decode_backend_setting_is_checked(settings):
    with pytest.raises(SettingsError, match="decode_backend must be one of auto, threads, processes, gpu"):
        settings.replace(decode_backend="fibers").validate()


# --- choices that need no GPU to test ------------------------------------------------------


def test_processes_are_chosen_only_where_they_pay():
    many = PROCESS_MIN_FILES
    assert choose_decode_backend("auto", "cpu", 2, many, False) == "threads"
    assert choose_decode_backend("auto", "cpu", 8, many, False) == "processes"
    assert choose_decode_backend("auto", "cpu", 8, many - 1, False) == "threads"  # a watcher's batch
    assert choose_decode_backend("auto", "cuda", 2, many, False) == "processes"
    assert choose_decode_backend("auto", "cuda", 16, many, True) == "gpu"
    assert choose_decode_backend("processes", "cpu", 2, 1, False) == "processes"  # forced
    assert choose_decode_backend("threads", "cuda", 16, many, True) == "threads"
    assert choose_decode_backend("gpu", "cpu", 16, many, False) == "processes"  # no GPU here


def test_the_batch_size_follows_free_vram():
    mb = 1024**2
    assert gpu.batch_for_vram(80 * 1024 * mb, 20 * mb) == 512  # an H100: capped
    assert gpu.batch_for_vram(4 * 1024 * mb, 20 * mb) == 64  # 2 GB usable / 20 MB = 102 -> 64
    assert gpu.batch_for_vram(100 * mb, 20 * mb) == gpu.MIN_GPU_BATCH  # never below the floor
    assert gpu.batch_for_vram(10 * mb, 0) == gpu.MIN_GPU_BATCH


def test_half_precision_is_used_only_when_it_agrees_with_fp32():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((16, 512)).astype(np.float32)
    close = reference + 0.001 * rng.standard_normal(reference.shape).astype(np.float32)
    assert gpu.half_agrees(reference, close.astype(np.float16))
    far = reference + 0.2 * rng.standard_normal(reference.shape).astype(np.float32)
    assert not gpu.half_agrees(reference, far)
    broken = close.copy()
    broken[3] = np.nan  # an fp16 overflow
    assert not gpu.half_agrees(reference, broken)
    with pytest.raises(ValueError):
        gpu.min_cosine(reference, reference[:3])


def test_the_half_check_runs_the_real_model_on_cpu(library):
    import torch

    model = library.embedder.load()._model
    half, cosine = gpu.half_model_if_it_agrees(
        model, library.embedder.image_size, "cpu", dtype=torch.bfloat16
    )
    assert np.isfinite(cosine) and -1 <= cosine <= 1
    assert (half is None) == (cosine < gpu.HALF_MIN_COSINE)
    assert next(model.parameters()).dtype == torch.float32  # the fp32 model is left alone


def _jpeg(tmp_path, name, **save) -> bytes:
    path = tmp_path / name
    img = product_image(5, (320, 240))
    mode = save.pop("mode", None)
    (img.convert(mode) if mode else img).save(path, "JPEG", **save)
    return path.read_bytes()


def test_only_plain_jpegs_go_to_the_gpu_decoder(tmp_path):
    plan = gpu_decode.gpu_jpeg_plan(_jpeg(tmp_path, "a.jpg"), 250_000_000)
    assert (plan.width, plan.height, plan.orientation, plan.format) == (320, 240, 1, "JPEG")
    assert gpu_decode.gpu_jpeg_plan(_jpeg(tmp_path, "g.jpg", mode="L"), 250_000_000) is not None
    assert gpu_decode.gpu_jpeg_plan(_jpeg(tmp_path, "p.jpg", progressive=True), 250_000_000) is None
    assert gpu_decode.gpu_jpeg_plan(_jpeg(tmp_path, "c.jpg", mode="CMYK"), 250_000_000) is None
    assert gpu_decode.gpu_jpeg_plan(_jpeg(tmp_path, "a.jpg"), 320 * 240 - 1) is None  # over the limit
    assert gpu_decode.gpu_jpeg_plan(write_image(tmp_path / "x.png", 1).read_bytes(), 250_000_000) is None
    assert gpu_decode.gpu_jpeg_plan(b"\xff\xd8\xff\xe0 truncated", 250_000_000) is None
    exif = Image.Exif()
    exif[0x0112] = 6
    assert gpu_decode.gpu_jpeg_plan(_jpeg(tmp_path, "r.jpg", exif=exif), 250_000_000).orientation == 6


@pytest.mark.parametrize("orientation", range(1, 9))
def test_gpu_orientation_matches_pillows(orientation):
    import torch

    from visualfinder.ingest.imaging import _apply_orientation

    img = product_image(orientation, (40, 24))
    expected = np.asarray(_apply_orientation(img, orientation) if orientation > 1 else img)
    chw = torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())
    got = gpu_decode.orient(chw, orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("size", [(800, 600), (600, 800), (256, 256), (100, 50), (3000, 7)])
def test_gpu_thumbnail_size_matches_pillows(size):
    img = Image.new("RGB", size)
    img.thumbnail((256, 256))
    assert gpu_decode.thumbnail_fit(*size, 256) == img.size


def test_gpu_preprocessing_run_on_cpu_is_close_to_the_cpu_path(library):
    import torch

    recipe = library.embedder.pixel_recipe()
    for size in ((640, 480), (300, 900), (2000, 40)):
        img = product_image(11, size)
        expected = apply_recipe(img, recipe)
        chw = torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())
        got = gpu_decode.model_input(chw, recipe).numpy()
        assert got.shape == expected.shape
        # Bicubic antialias in torch vs Pillow: within a few pixel levels (1 level = 1/255/std).
        assert np.abs(got - expected).mean() < 0.05, size


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (64, 64), (65, 300), (3000, 20), (20, 3000)])
def test_the_pixel_recipe_makes_the_models_own_tensor(library, size):
    img = product_image(3, size)
    recipe = library.embedder.pixel_recipe()
    np.testing.assert_array_equal(apply_recipe(img, recipe), library.embedder.preprocess(img).numpy())


def test_the_gpu_decoder_batches_jpegs_and_leaves_the_rest_to_the_cpu_path(library, tmp_path):
    """GpuJpegDecoder end to end on the CPU device: torchvision decodes the batch, orientation,
    preprocessing and thumbnails run as on CUDA; other files are handed back (None)."""
    from concurrent.futures import ThreadPoolExecutor

    from visualfinder.ingest.imaging import content_hash, decode_file

    recipe = library.embedder.pixel_recipe()
    thumbs = tmp_path / "thumbs"
    files = [write_image(tmp_path / f"p{i}.jpg", 40 + i, (400, 300)) for i in range(6)]
    png = write_image(tmp_path / "x.png", 50)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(files[0].read_bytes()[:2000])  # a valid header, then nothing
    decoder = gpu_decode.GpuJpegDecoder(recipe, "cpu", decode_side=64, max_pixels=250_000_000,
                                        thumbnail_size=128, thumbs_dir=thumbs, max_batch=4)  # fmt: skip
    try:
        with ThreadPoolExecutor(6) as pool:

            def run(path):
                data = path.read_bytes()
                return decoder.decode(str(path), data, content_hash(data), 30.0)

            results = list(pool.map(run, [*files, png, broken]))
    finally:
        decoder.close()
    assert results[-2:] == [None, None]  # the PNG and the truncated JPEG: the CPU path's
    assert decoder.decoded == len(files)
    for path, done in zip(files, results, strict=False):
        assert (done.width, done.height, done.format) == (400, 300, "JPEG")
        assert Image.open(done.thumb).size == (128, 96)
        expected = apply_recipe(decode_file(path, min_side=400).image, recipe)
        assert np.abs(done.tensor.numpy() - expected).mean() < 0.05
