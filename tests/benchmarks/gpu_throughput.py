"""GPU indexing throughput: one script, under 6 minutes on a GPU box (not a pytest test).

    python tests/benchmarks/gpu_throughput.py [--out OUT.json]     # on a CUDA machine (estimated 2-4 min)
    python tests/benchmarks/gpu_throughput.py --cpu-smoke          # anywhere: small, on CPU

Reports, each with GPU utilisation (pynvml when installed, else nvidia-smi every 100 ms):
- the model alone on pre-decoded tensors: fp32, fp16 autocast, and the half-precision weights
  the embedder uses (checked against fp32), at the batch size free VRAM gives;
- fp16 against fp32 agreement: the embedder's seeded check, and on the real images here;
- `Library.index` on 512 camera JPEGs (4000x3000, ~3 MB) and on 4,000 800x800 product JPEGs,
  for each decode backend (threads: the old path; processes; gpu: nvJPEG + processes), with the
  rate against the model alone and the indexing thread's time in the model and the catalog;
- how close the GPU decoder's vectors are to the CPU decoder's (same files, cosine).
Environment: VF_BENCH_JPEGS (512), VF_BENCH_SMALL (4000), VF_BENCH_SMALL_FORMAT (jpg; png),
VF_BENCH_MODEL (ViT-B-32-256, random weights), VF_BENCH_BACKENDS (threads,processes,gpu).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE), str(HERE.parent)]

from imagegen import write_image  # noqa: E402
from synthetic import camera_jpeg  # noqa: E402

from visualfinder.config import Settings  # noqa: E402
from visualfinder.library.facade import open_library  # noqa: E402
from visualfinder.models import gpu  # noqa: E402
from visualfinder.models.embedder import Embedder  # noqa: E402


class GpuSampler:
    """Mean GPU utilisation (%) while the block runs: pynvml if installed, else nvidia-smi."""

    def __init__(self, device: str):
        self.enabled = device == "cuda"

    def __enter__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self.enabled:
            self._thread.start()
        return self

    def _run(self):
        read = _nvml_reader() or _smi_reader
        while not self._stop.is_set():
            value = read()
            if value is None:
                return
            self.samples.append(value)
            self._stop.wait(0.1)

    def __exit__(self, *exc):
        self._stop.set()
        if self.enabled:
            self._thread.join()
        self.mean = float(np.mean(self.samples)) if self.samples else float("nan")


def _nvml_reader():
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # noqa: BLE001 - not installed, or no driver: nvidia-smi instead
        return None
    return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)


def _smi_reader() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None


def _make_camera(args):
    path, seed = args
    camera_jpeg(Path(path), seed)


def _make_small(args):
    path, seed = args
    write_image(Path(path), seed, (800, 800))


def make_files(root: Path, jpegs: int, small: int, small_format: str) -> dict[str, Path]:
    folders = {"camera": root / "camera", "small": root / "small"}
    work = [(_make_camera, (str(folders["camera"] / f"camera_{i:04d}.jpg"), 1000 + i)) for i in range(jpegs)]
    work += [
        (_make_small, (str(folders["small"] / f"product_{i:05d}.{small_format}"), 5000 + i))
        for i in range(small)
    ]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for fn in (_make_camera, _make_small):
            list(pool.map(fn, [a for f, a in work if f is fn], chunksize=8))
    return folders


def model_alone(embedder: Embedder, device: str, rounds: int) -> dict:
    """Images/s of the model on pre-decoded tensors: the embedder as configured, and fp32/autocast."""
    import torch

    batch = embedder.batch_size
    tensors = list(gpu.seeded_pixels(batch, embedder.image_size))
    if device == "cuda":  # the decoders hand GPU tensors to the model on CUDA (nvJPEG path)
        tensors = [t.to(device) for t in tensors]
    out = {"batch": batch}
    engine = embedder._engine
    variants = {"as used": engine}
    if device == "cuda" and getattr(engine, "dtype", None) is not None:
        from visualfinder.models.embedder import TorchBackend

        variants["fp16 autocast (fp32 weights)"] = TorchBackend(embedder._model, device)
    for name, backend in variants.items():
        stacked = torch.stack(tensors)
        for _ in range(3):
            backend.encode_image(stacked)  # warm-up: kernels, caches
        if device == "cuda":
            torch.cuda.synchronize()
        with GpuSampler(device) as sampler:
            t = time.perf_counter()
            for _ in range(rounds):
                backend.encode_image(stacked)
            seconds = time.perf_counter() - t
        out[name] = {"images_per_s": rounds * batch / seconds, "gpu_util_pct": sampler.mean}
        print(f"model alone, {name}: {out[name]['images_per_s']:.0f} images/s", flush=True)
    return out


def half_agreement_on_images(embedder: Embedder, folder: Path, count: int) -> dict:
    """Worst cosine between the half-precision and the fp32 model on real decoded images."""
    import torch

    from visualfinder.ingest.imaging import decode_file

    paths = sorted(folder.iterdir())[:count]
    pixels = torch.stack(
        [embedder.preprocess(decode_file(p, min_side=embedder.image_size).image) for p in paths]
    )
    engine = embedder._engine
    if getattr(engine, "dtype", None) is None:
        return {"seeded_check": embedder.half_cosine, "images": None, "note": "fp32 weights in use"}
    with torch.inference_mode():
        ref = embedder._model.encode_image(pixels.to(engine.device)).float().cpu().numpy()
    half = engine.encode_image(pixels)
    return {"seeded_check": embedder.half_cosine, "images": gpu.min_cosine(ref, half), "count": len(paths)}


def index_run(
    root: Path, folder: Path, label: str, model: str, device: str, backend: str, alone: float
) -> dict:
    data_dir = root / f"lib-{label}"
    settings = Settings.load(data_dir, model=model, pretrained="none", device=device, backend="torch",
                             decode_backend=backend)  # fmt: skip
    library = open_library(settings)
    try:
        library.embedder.load()
        phases = _time_phases(library)
        with GpuSampler(device) as sampler:
            t = time.perf_counter()
            report = library.index([folder])
            seconds = time.perf_counter() - t
        vectors = _vectors(library)
        pipeline = library.indexer.pipeline()
        result = {"files": report.added, "skipped": len(report.errors), "seconds": seconds,
                  "images_per_s": report.added / seconds, "of_model_alone": report.added / seconds / alone,
                  "gpu_util_pct": sampler.mean, "decode_workers": pipeline.decode_workers,
                  "main_thread_s": dict(phases)}  # fmt: skip
    finally:
        library.close()
    print(f"{label}: {result['images_per_s']:.1f} images/s ({result['of_model_alone']:.2f} of the model alone), "
          f"GPU {result['gpu_util_pct']:.0f} %", flush=True)  # fmt: skip
    return result | {"_vectors": vectors}


def _vectors(library) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    key = library.embedder.key
    for ids, chunk in library.catalog.iter_embeddings(key):
        records = library.catalog.records([int(i) for i in ids])
        for i, vector in zip(ids, chunk, strict=True):
            out[os.path.basename(records[int(i)].path)] = vector.astype(np.float32)
    return out


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


def _agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict:
    names = sorted(set(a) & set(b))
    if not names:
        return {}
    cos = [float(np.dot(a[n], b[n]) / (np.linalg.norm(a[n]) * np.linalg.norm(b[n]))) for n in names]
    return {"files": len(names), "min": min(cos), "median": float(np.median(cos))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="small run on CPU: does the script work?")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("out_json", nargs="?", help="the same, as the script took it before --out")
    args = parser.parse_args(argv)
    args.out = args.out or args.out_json
    smoke = args.cpu_smoke

    import torch

    device = "cpu" if smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here; run with --cpu-smoke")
    model = os.environ.get("VF_BENCH_MODEL", "vf-tiny" if smoke else "ViT-B-32-256")
    jpegs = int(os.environ.get("VF_BENCH_JPEGS", 6 if smoke else 512))
    small = int(os.environ.get("VF_BENCH_SMALL", 80 if smoke else 4000))
    small_format = os.environ.get("VF_BENCH_SMALL_FORMAT", "jpg")
    backends = os.environ.get("VF_BENCH_BACKENDS", "threads,processes" if smoke else "threads,processes,gpu")
    started = time.perf_counter()
    result: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                    "torch": torch.__version__, "cpus": os.cpu_count(), "model": model}  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="vf-gpu-"))
    folders = make_files(root, jpegs, small, small_format)
    result["files_made_s"] = time.perf_counter() - started
    print(
        f"{jpegs} camera JPEGs and {small} 800x800 {small_format} in {result['files_made_s']:.0f} s",
        flush=True,
    )

    embedder = Embedder(model, "none", device, backend="torch").load()
    result["model_alone"] = model_alone(embedder, device, rounds=5 if smoke else 40)
    if device == "cpu":  # the half check itself, on CPU in bf16 (fp16 kernels are CUDA's)
        _half, cosine = gpu.half_model_if_it_agrees(
            embedder._model, embedder.image_size, "cpu", torch.bfloat16
        )
        result["half_vs_fp32"] = {"seeded_check_bf16_cpu": cosine}
    else:
        result["half_vs_fp32"] = half_agreement_on_images(embedder, folders["camera"], 64)
    print(f"half vs fp32: {result['half_vs_fp32']}", flush=True)
    alone = result["model_alone"]["as used"]["images_per_s"]

    vectors = {}
    for name in ("camera", "small"):
        for backend in backends.split(","):
            label = f"index_{name}_{backend}"
            run = index_run(root, folders[name], label, model, device, backend, alone)
            vectors[(name, backend)] = run.pop("_vectors")
            result[label] = run
    for name in ("camera", "small"):
        if (name, "gpu") in vectors and (name, "threads") in vectors:
            result[f"gpu_vs_cpu_decode_{name}"] = _agreement(
                vectors[(name, "threads")], vectors[(name, "gpu")]
            )
        if (name, "processes") in vectors and (name, "threads") in vectors:
            result[f"processes_vs_threads_{name}"] = _agreement(
                vectors[(name, "threads")], vectors[(name, "processes")]
            )
    result["total_s"] = time.perf_counter() - started
    _print_table(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


def _print_table(result: dict) -> None:
    print(f"\n{result['device']}, {result['cpus']} CPUs, torch {result['torch']}, {result['model']}")
    print("| what | images/s | of model alone | GPU util % | indexing thread in model / catalog (s) |")
    print("|---|---|---|---|---|")
    for name, row in result["model_alone"].items():
        if isinstance(row, dict):
            print(f"| model alone, {name}, batch {result['model_alone']['batch']} | {row['images_per_s']:.0f} | "
                  f"1.00 | {row['gpu_util_pct']:.0f} | |")  # fmt: skip
    for label, row in result.items():
        if label.startswith("index_"):
            phases = row["main_thread_s"]
            print(f"| `Library.index` {label[6:]} ({row['files']} files, {row['decode_workers']} workers) | "
                  f"{row['images_per_s']:.1f} | {row['of_model_alone']:.2f} | {row['gpu_util_pct']:.0f} | "
                  f"{phases['embed']:.1f} / {phases['catalog']:.1f} |")  # fmt: skip
    for label, row in result.items():
        if "_vs_" in label:
            print(f"{label}: {row}")
    print(f"total {result['total_s']:.0f} s")


if __name__ == "__main__":
    main()
