"""GPU indexing throughput, on demand where a CUDA GPU is present (not a pytest test):

    python tests/benchmarks/gpu_throughput.py [OUT.json]

ViT-B-32-256 (random weights) on `cuda` with the torch backend (fp16 autocast): the model alone
on pre-decoded tensors in the default GPU batch, then `Library.index` end to end on camera-size
JPEGs and on small PNGs, each with GPU utilisation sampled by nvidia-smi every 100 ms.
Environment: VF_BENCH_JPEGS (128), VF_BENCH_PNGS (2000), VF_BENCH_MODEL (ViT-B-32-256),
VF_BENCH_WORKERS (decode worker counts to compare, e.g. "8,15"; default: the automatic count).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE), str(HERE.parent)]

from imagegen import write_image  # noqa: E402
from synthetic import camera_jpeg  # noqa: E402

from visualfinder.config import Settings  # noqa: E402
from visualfinder.library.facade import open_library  # noqa: E402
from visualfinder.models.embedder import Embedder  # noqa: E402

JPEGS = int(os.environ.get("VF_BENCH_JPEGS", 128))
PNGS = int(os.environ.get("VF_BENCH_PNGS", 2000))
MODEL = os.environ.get("VF_BENCH_MODEL", "ViT-B-32-256")
DEVICE = os.environ.get("VF_BENCH_DEVICE", "cuda")  # cpu: a smoke run of this script
WORKERS = [int(w) for w in os.environ.get("VF_BENCH_WORKERS", "0").split(",")]  # 0: automatic


class GpuSampler:
    """Mean GPU utilisation (%) while the block runs, from nvidia-smi's 100 ms samples."""

    def __enter__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True)  # fmt: skip
            except OSError:  # no nvidia-smi: no samples
                return
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))
            self._stop.wait(0.1)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.mean = float(np.mean(self.samples)) if self.samples else float("nan")


def main(out_path: str | None) -> dict:
    import torch

    result: dict = {
        "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    root = Path(tempfile.mkdtemp(prefix="vf-gpu-"))
    started = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(lambda i: camera_jpeg(root / "camera" / f"camera_{i:04d}.jpg", 1000 + i), range(JPEGS)))
        list(
            pool.map(
                lambda i: write_image(root / "small" / f"web_{i:05d}.png", 5000 + i, (800, 800)), range(PNGS)
            )
        )
    result["files_made_s"] = time.perf_counter() - started

    embedder = Embedder(MODEL, "none", DEVICE, backend="torch").load()
    batch = embedder.batch_size
    rng = np.random.default_rng(0)
    tensors = [torch.from_numpy(rng.standard_normal((3, embedder.image_size, embedder.image_size), dtype=np.float32))
               for _ in range(batch)]  # fmt: skip
    for _ in range(3):
        embedder.embed_batch(tensors)  # warm-up: kernels, autocast caches
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    rounds = 40
    with GpuSampler() as gpu:
        t = time.perf_counter()
        for _ in range(rounds):
            embedder.embed_batch(tensors)
        seconds = time.perf_counter() - t
    result["model_alone"] = {
        "batch": batch,
        "images_per_s": rounds * batch / seconds,
        "gpu_util_pct": gpu.mean,
    }
    print(result, flush=True)

    for name, workers in [(name, w) for name in ("camera", "small") for w in WORKERS]:
        label = f"index_{name}" + (f"_w{workers}" if workers else "")
        data_dir = root / f"lib-{label}"
        library = open_library(
            Settings.load(
                data_dir,
                model=MODEL,
                pretrained="none",
                device=DEVICE,
                backend="torch",
                decode_workers=workers,
            )
        )
        try:
            library.embedder.load()
            phases = _time_phases(library)
            with GpuSampler() as gpu:
                t = time.perf_counter()
                report = library.index([root / name])
                seconds = time.perf_counter() - t
            count = report.added
            result[label] = {"files": count, "seconds": seconds, "images_per_s": count / seconds,
                             "gpu_util_pct": gpu.mean, "decode_workers": library.indexer.pipeline().decode_workers,
                             "main_thread_s": dict(phases)}  # fmt: skip
        finally:
            library.close()
        print(result, flush=True)
    if out_path:
        Path(out_path).write_text(json.dumps(result, indent=1))
    return result


def _time_phases(library) -> dict[str, float]:
    """Seconds the indexing thread spends embedding and writing the catalog (the rest of its
    time it waits for decoded files): says which side bounds the run."""
    phases = {"embed": 0.0, "catalog": 0.0}

    def timed(obj, name: str, phase: str) -> None:
        original = getattr(obj, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases[phase] += time.perf_counter() - t

        setattr(obj, name, wrapper)

    timed(library.embedder, "embed_batch", "embed")
    timed(library.catalog, "apply", "catalog")
    return phases


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
