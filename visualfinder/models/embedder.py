"""CLIP embeddings with open_clip: model loading (pretrained tag, local weights file or random),
device choice (cuda > mps > cpu), backend choice (torch, or ONNX Runtime on CPU), fp16 on GPU,
batched L2-normalised image and text vectors.

The model loads lazily, once, under a lock, and then stays loaded for the life of the process.
Hardware choices live here: `resolve_device` and `Embedder._choose_engine` (torch or onnx).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import pickle
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Protocol

import numpy as np

from visualfinder.config import BACKENDS, PRECISIONS
from visualfinder.errors import ModelUnavailableError
from visualfinder.jobs import Progress, ProgressCallback
from visualfinder.models.weights import DownloadProgress, fetch_pretrained

log = logging.getLogger(__name__)

# OMP_WAIT_POLICY=PASSIVE is set by the package's __init__, before torch or usearch loads.

MODEL_CONFIG_DIR = Path(__file__).parent / "configs"
NO_WEIGHTS = ("none", "random", "")
# Seed for random-init models ("--pretrained none"): tests and benchmarks are reproducible.
RANDOM_INIT_SEED = 0
# Longest side / shortest side of what reaches a shortest-side-resize transform (see preprocess):
# past this, the resized intermediate (aspect x side^2 pixels) is cut to 32 x 256^2 = 2 MP at most.
MAX_MODEL_ASPECT = 32.0

# int8 vectors (config.PRECISIONS) are another model's: their key ends in this.
INT8_KEY_SUFFIX = "/int8"
ONNX_DIR = "onnx"  # in the data dir: exported models for the ONNX Runtime backend


_open_clip_lock = threading.Lock()
_configs_registered = False
# Loaded models by (model key, device): reopening a library (or a test) never loads twice.
_loaded: dict[tuple[str, str], tuple[object, object, object]] = {}
# Half-precision copies (or None) and their agreement with fp32, by (model key, device).
_half_models: dict[tuple[str, str], tuple[object, float]] = {}
# ONNX engines by (model key, device, export folder, threads), for the same reason.
_engines: dict[tuple[str, str, str, int], tuple[object, object, object]] = {}


class Backend(Protocol):
    """What runs the towers: preprocessed pixels / tokens in, unit vectors out."""

    name: str

    def encode_image(self, pixels) -> np.ndarray: ...

    def encode_text(self, tokens) -> np.ndarray: ...


class TorchBackend:
    """The open_clip model itself, under inference_mode: with half-precision weights on CUDA
    when they agree with fp32 (models/gpu.py), else fp16 autocast on a GPU."""

    name = "torch"

    def __init__(self, model, device: str, dtype=None):
        self.model = model
        self.device = device
        self.dtype = dtype  # the weights' dtype when it is not fp32 (then no autocast)
        self._short_text = None  # models/short_text.py's tower, False where it does not hold

    def encode_image(self, pixels) -> np.ndarray:
        import torch

        batch = torch.as_tensor(pixels)
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_image(batch.to(self.device, dtype=self.dtype, non_blocking=True))
        return _normalise(features)

    def encode_text(self, tokens) -> np.ndarray:
        import torch

        from visualfinder.models.short_text import short_text_tower, trimmed

        if self._short_text is None:  # the tower over the used positions only, where it holds
            self._short_text = short_text_tower(self.model) or False
        with torch.inference_mode(), self._autocast():
            if self._short_text:
                features = self._short_text(torch.as_tensor(trimmed(tokens)).to(self.device))
            else:
                features = self.model.encode_text(torch.as_tensor(tokens).to(self.device))
        return _normalise(features)

    def _autocast(self):
        import torch

        if self.device in ("cuda", "mps") and self.dtype is None:
            return torch.autocast(self.device, dtype=torch.float16)
        return nullcontext()


# Building a model draws its initial weights from torch's one global generator. Two models built
# at once (two libraries, a model switch, the app's workers) interleave their draws, and a
# random-init model ("none": vf-tiny in the tests) then gets other weights than its seed gives
# in any other process: vectors that match nothing indexed elsewhere. One build at a time;
# downloads stay outside this lock.
_build_lock = threading.Lock()


def _open_clip():
    """Import open_clip once and register our model configs (vf-tiny) with it."""
    global _configs_registered
    import open_clip

    with _open_clip_lock:
        if not _configs_registered:
            open_clip.add_model_config(MODEL_CONFIG_DIR)
            _configs_registered = True
    return open_clip


def _open_clip_config_dir() -> Path | None:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "model_configs"


# Files whose presence means an NVIDIA (or AMD ROCm) driver is installed: only then can torch
# find a GPU, so only then is torch imported to ask (importing it costs ~1.3 s on a small CPU).
_GPU_DRIVER_FILES = (
    "/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/usr/lib/wsl/lib/libcuda.so",
    "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/aarch64-linux-gnu/libcuda.so.1",
    "/usr/lib64/libcuda.so.1", "/usr/lib/libcuda.so.1",
)  # fmt: skip


def gpu_possible() -> bool:
    """True when this machine may have a GPU torch can use: an NVIDIA (or ROCm) driver, or
    Apple silicon (MPS). Looks at files only: no torch, no subprocess."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    if sys.platform == "win32":
        system = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32"
        return (system / "nvcuda.dll").is_file() or shutil.which("nvidia-smi") is not None
    return any(os.path.exists(p) for p in _GPU_DRIVER_FILES) or shutil.which("nvidia-smi") is not None


def resolve_device(requested: str = "auto") -> str:
    """'auto' picks cuda, then Apple mps, then cpu; an explicit device must be available.

    torch is imported only to look for a GPU that may be there (`gpu_possible`)."""
    if requested == "cpu" or (requested == "auto" and not gpu_possible()):
        return "cpu"
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(
            "device 'cuda' was requested but no CUDA GPU is available; use --device auto"
        )
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelUnavailableError(
                "device 'mps' was requested but Apple MPS is not available; use --device auto"
            )
    return requested


def weights_are_file(pretrained: str) -> bool:
    return pretrained.lower() not in NO_WEIGHTS and (
        os.sep in pretrained or "/" in pretrained or Path(pretrained).is_file()
    )


def model_key(model: str, pretrained: str, precision: str = "fp32") -> str:
    """Identity of the vectors a model produces; stored with every embedding. int8 vectors are
    close to fp32's but not the same, so they are another model's (a key ending in /int8)."""
    if precision not in PRECISIONS:
        raise ModelUnavailableError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if pretrained.lower() in NO_WEIGHTS:
        key = f"{model}/random-seed{RANDOM_INIT_SEED}"
    elif weights_are_file(pretrained):
        path = Path(pretrained).expanduser()
        size = path.stat().st_size if path.is_file() else 0
        key = f"{model}/file:{path.name}:{size}"
    else:
        key = f"{model}/{pretrained}"
    return key + INT8_KEY_SUFFIX if precision == "int8" else key


def precision_of_key(key: str) -> str:
    """The arithmetic of the vectors a model key names: "int8" or "fp32"."""
    return "int8" if key.endswith(INT8_KEY_SUFFIX) else "fp32"


def model_label(model: str, pretrained: str, precision: str = "fp32") -> str:
    """A model as a person reads it: "ViT-B-32 (laion2b_s34b_b79k)", ", int8" added when quantized."""
    return f"{model} ({pretrained}{', int8' if precision == 'int8' else ''})"


def model_config(model: str) -> dict:
    """The architecture config of a model, read without importing torch (status stays fast)."""
    for folder in (MODEL_CONFIG_DIR, _open_clip_config_dir()):
        candidate = folder / f"{model}.json" if folder else None
        if candidate is not None and candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    cfg = _open_clip().get_model_config(model)
    if cfg is None:
        known = ", ".join(m for m in _open_clip().list_models() if m.startswith(("ViT-B", "vf-")))
        raise ModelUnavailableError(f"unknown model {model!r}; some known models: {known}")
    return cfg


class Embedder:
    """One open_clip model turning images and text into unit vectors of `dim` floats.

    `backend`: "torch", "onnx" (ONNX Runtime; exports cached under `onnx_dir`) or "auto":
    ONNX when onnxruntime is installed and runs on the device (CPU; CUDA or CoreML where the
    build has that provider), `onnx_dir` is given and the export, checked against torch and
    timed against it once on a batch, is faster; torch otherwise.
    `threads` > 0 caps the model's intra-op threads (0: the library's default, all cores).
    `one_shot`: the process embeds a query or two and exits (a CLI search): ONNX sessions then
    open without prepacking their weights (tens of ms instead of ~0.3 s; each run a little slower).
    """

    def __init__(
        self,
        model: str,
        pretrained: str,
        device: str = "auto",
        *,
        cache_dir: str | Path | None = None,
        batch_size: int = 0,
        backend: str = "auto",
        onnx_dir: str | Path | None = None,
        threads: int = 0,
        one_shot: bool = False,
        precision: str = "fp32",
    ):
        if backend not in BACKENDS:
            raise ModelUnavailableError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if precision == "int8" and device not in ("auto", "cpu"):
            raise ModelUnavailableError(
                f"int8 models run on the CPU: set device to auto or cpu (not {device}), or model_precision to fp32"
            )
        self.model_name = model
        self.pretrained = pretrained
        # int8 is ONNX Runtime's quantized graph on the CPU, whatever `backend` says (it is for
        # fp32): no race, no torch engine for it.
        self.requested_device = "cpu" if precision == "int8" else device
        self.requested_backend = "onnx" if precision == "int8" else backend
        self.cache_dir = str(cache_dir) if cache_dir else None
        self.onnx_dir = Path(onnx_dir) if onnx_dir else None
        self.threads = threads
        self.one_shot = one_shot
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._model = None  # the torch model, when it was needed (torch backend, or an ONNX export)
        self._engine: Backend | None = None
        self._transform = None
        self._pixel_steps: tuple[list, tuple[np.ndarray, np.ndarray] | None] | None = None
        self._preprocessor = None  # the numpy preprocessing (ONNX backend), instead of _transform
        self._tokenizer = None
        self._device: str | None = None
        self._vram_batch = 0  # on CUDA: the batch size free VRAM allows (models/gpu.py)
        self._stager = None  # on CUDA: the pinned host buffer of embed_batch
        self.half_cosine: float | None = None  # half vs fp32 agreement, when it was checked
        self.precision = precision
        self.key = model_key(model, pretrained, precision)
        cfg = model_config(model)
        self.dim = int(cfg["embed_dim"])
        size = cfg.get("vision_cfg", {}).get("image_size", 224)
        self.image_size = int(size if isinstance(size, int) else max(size))
        self.context_length = int(cfg.get("text_cfg", {}).get("context_length", 77))

    @classmethod
    def for_settings(cls, settings, model: str, pretrained: str, precision: str | None = None,
                     one_shot: bool = False) -> Embedder:  # fmt: skip
        """The embedder for `model` as the settings ask: device, batch size, backend, threads,
        ONNX exports in the data dir (the one place an application embedder is built).
        `precision`: the library's (a model key's); None takes the settings' model_precision."""
        return cls(
            model, pretrained, settings.device, batch_size=settings.batch_size, backend=settings.backend,
            onnx_dir=Path(settings.data_dir) / ONNX_DIR, threads=settings.model_threads, one_shot=one_shot,
            precision=precision or settings.model_precision,
        )  # fmt: skip

    # --- loading -------------------------------------------------------------------------

    @property
    def is_loaded(self) -> bool:
        return self._engine is not None

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self.requested_device)
        return self._device

    @property
    def backend(self) -> str:
        """The backend in use ("torch" or "onnx"); loads the model to find out."""
        self.load()
        assert self._engine is not None
        return self._engine.name

    @property
    def batch_size(self) -> int:
        if self._batch_size > 0:
            return self._batch_size
        if self._vram_batch:
            return self._vram_batch
        return 64 if self.device in ("cuda", "mps") else 16

    def load(self, progress: DownloadProgress | None = None) -> Embedder:
        """Load the model (downloading weights on first use); safe to call from any thread."""
        if self._engine is not None:
            return self
        with self._lock:
            if self._engine is None:
                self._load(progress)
        return self

    def _load(self, progress: DownloadProgress | None) -> None:
        engine = self._onnx_engine(progress) if self._wants_onnx() else None
        if engine is None:
            model, self._transform, self._tokenizer = self._torch_parts(progress)
            self._preprocessor = None
            engine = self._cuda_engine(model) if self.device == "cuda" else TorchBackend(model, self.device)
        self._engine = engine
        log.info("loaded %s on %s with the %s backend", self.key, self.device, engine.name)

    def _cuda_engine(self, model) -> TorchBackend:
        """On CUDA: real half-precision weights when they agree with fp32 (else fp16 autocast),
        and a batch size from free VRAM unless the settings fix one."""
        from visualfinder.models import gpu

        cached = _half_models.get((self.key, self.device))
        if cached is None:
            cached = _half_models[(self.key, self.device)] = gpu.half_model_if_it_agrees(
                model, self.image_size, self.device
            )
        half, self.half_cosine = cached
        if half is None:
            log.warning("half-precision weights of %s disagree with fp32 (cosine %.4f): using fp16 autocast",
                        self.key, self.half_cosine)  # fmt: skip
            engine = TorchBackend(model, self.device)
        else:
            engine = TorchBackend(half, self.device, dtype=next(half.parameters()).dtype)
        dtype = engine.dtype or next(model.parameters()).dtype
        per_image = gpu.bytes_per_image(engine.model, self.image_size, self.device, dtype)
        self._vram_batch = gpu.batch_for_vram(gpu.free_vram(), per_image)
        self._stager = gpu.PinnedStager()
        log.info("CUDA batch %d (%.1f MB per image), weights %s", self._vram_batch, per_image / 1e6, dtype)
        return engine

    def pixel_recipe(self):
        """The model's preprocessing as plain data for decoder processes (None: not replicable)."""
        from visualfinder.models.pixels import recipe_from_spec, recipe_from_transform

        if self._transform is None and self._preprocessor is None:
            self.load()
        if self._preprocessor is not None:  # the lean ONNX path: the numpy preprocessing's spec
            return recipe_from_spec(self._preprocessor.spec, MAX_MODEL_ASPECT)
        return recipe_from_transform(self._transform, MAX_MODEL_ASPECT)

    def warm(self, towers: Sequence[str] = ("image", "text")) -> Embedder:
        """Load the model and open the sessions of `towers` now (the watcher and the app call
        this in the background at start, so the first file or query does not wait)."""
        self.load()
        prepare = getattr(self._engine, "prepare", None)
        if prepare is not None:
            for tower in towers:
                prepare(tower)
        return self

    def warm_in_background(self, towers: Sequence[str] = ("image", "text")) -> threading.Thread:
        """`warm` on a daemon thread. A failure is left to the first real use, which reports it."""

        def run() -> None:
            try:
                self.warm(towers)
            except Exception as exc:  # noqa: BLE001 - reported again, properly, by the first use
                log.debug("background model load of %s failed: %s", self.key, exc)

        thread = threading.Thread(target=run, name=f"load {self.model_name}", daemon=True)
        thread.start()
        return thread

    def _wants_onnx(self) -> bool:
        from visualfinder.models import onnx_backend

        if self.requested_backend == "onnx":
            if not onnx_backend.available():
                raise ModelUnavailableError(
                    "backend 'onnx' needs onnxruntime: pip install onnxruntime (or set backend to auto)"
                )
            if self.onnx_dir is None:
                raise ModelUnavailableError("backend 'onnx' needs a folder for its exports (onnx_dir)")
            return True
        # auto: a candidate where onnxruntime runs on the device itself (CPU, or a GPU whose
        # provider this onnxruntime build has); the first export's timed race then decides.
        return (
            self.requested_backend == "auto"
            and self.onnx_dir is not None
            and onnx_backend.available()
            and onnx_backend.accelerates(self.device)
        )

    def _torch_parts(self, progress: DownloadProgress | None = None) -> tuple[object, object, object]:
        """The torch model, its preprocessing and tokenizer (created once per process)."""
        if self.threads > 0:
            import torch

            torch.set_num_threads(self.threads)
        # By the fp32 key: an int8 embedder quantizes the same torch model, so one copy serves both.
        weights = (model_key(self.model_name, self.pretrained), self.device)
        cached = _loaded.get(weights)
        if cached is None:
            cached = self._create(progress)
            _loaded[weights] = cached
        self._model = cached[0]
        return cached

    def _onnx_cache(self):
        from visualfinder.models import onnx_backend

        assert self.onnx_dir is not None
        weights = str(Path(self.pretrained).expanduser()) if weights_are_file(self.pretrained) else None
        return onnx_backend.OnnxCache(
            self.onnx_dir, self.key, onnx_backend.fingerprint(self.key, weights), precision=self.precision
        )

    def _needs_preparing(self, meta: dict | None, cache) -> bool:
        """No verdict yet for this model on this machine, or the verdict's export is gone."""
        if meta is None:
            return True
        if self.requested_backend == "auto" and meta.get("machine") != machine_id():
            return True  # another machine's race (a copied data dir) says nothing about this one
        if self.requested_backend == "auto" and meta.get("choice") == "torch":
            return False
        if not cache.path("image").is_file():
            log.warning("the ONNX export of %s is missing; exporting it again", self.key)
            return True
        return False

    def _onnx_engine(self, progress: DownloadProgress | None) -> Backend | None:
        """The ONNX Runtime engine, preparing the model first if needed; None means torch.

        With the model prepared this imports neither torch nor open_clip: the preprocessing and
        the tokenizer are the numpy ones (models/preprocess.py, models/tokenizer.py), driven by
        the preprocess config stored with the export."""
        from visualfinder.models import onnx_backend

        cache = self._onnx_cache()
        engine_key = (self.key, self.device, str(cache.dir), self.threads, self.one_shot)
        if engine_key in _engines and cache.meta() is not None:
            engine, self._transform, self._tokenizer, self._preprocessor = _engines[engine_key]
            return engine
        meta = cache.meta()
        if self._needs_preparing(meta, cache):
            log.warning(
                "preparing %s for this machine: exporting it to ONNX Runtime%s (first use only; "
                "`visualfinder prepare-model` does it ahead)", self.key,
                " and timing the backends" if self.requested_backend == "auto" else "",
            )  # fmt: skip
            meta = self._prepare_onnx(cache, progress)
            if meta is None:
                return None
        if self.requested_backend == "auto" and meta.get("choice") == "torch":
            return None
        self._preprocessor = _lean_preprocessor(self.key, meta["preprocess"])
        if self._preprocessor is None:
            from open_clip.transform import PreprocessCfg, image_transform_v2

            pp = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["preprocess"].items()}
            self._transform = image_transform_v2(PreprocessCfg(**pp), is_train=False)
        self._tokenizer = None  # built by the first text (an image search never needs it)
        engine = onnx_backend.OnnxBackend(
            cache,
            lambda: self._torch_parts()[0],
            self.device,
            self.threads,
            self.image_size,
            self.context_length,
            prepack=not self.one_shot,
        )
        _engines[engine_key] = (engine, self._transform, self._tokenizer, self._preprocessor)
        return engine

    def prepare(self, progress: ProgressCallback | None = None) -> dict:
        """Get the model ready on this machine once: download the weights, export both towers
        to ONNX (checked against torch), time the backends (auto) and store the verdict beside
        the export, so that later starts load only what they use. Returns what was decided:
        {"model", "device", "backend", "seconds", "timings"?}."""
        started = time.perf_counter()
        report = progress or (lambda p: None)
        download = _progress_to_download(report)
        meta = None
        if self._wants_onnx():
            cache = self._onnx_cache()
            meta = cache.meta()
            if self._needs_preparing(meta, cache) or (
                meta.get("choice", "onnx") == "onnx" and not cache.path("text").is_file()
            ):
                meta = self._prepare_onnx(cache, download, report)
        else:
            self._torch_parts(download)
        with self._lock:  # what load() now picks: the new verdict, and nothing stale
            self._engine = None
            _engines.clear()
        self.load(download)
        result = {"model": self.key, "device": self.device, "backend": self.backend,
                  "seconds": time.perf_counter() - started}  # fmt: skip
        if meta and meta.get("timings"):
            result["timings"] = meta["timings"]
        return result

    def _prepare_onnx(self, cache, download: DownloadProgress | None,
                      report: ProgressCallback | None = None) -> dict | None:  # fmt: skip
        """Export both towers (reusing a valid export), check them and (auto) time them on
        this machine; write the verdict. None means torch (the export failed under auto)."""
        from visualfinder.models import onnx_backend

        report = report or (lambda p: None)
        model, _, tokenizer = self._torch_parts(download)
        old = cache.meta()
        if old is None:
            cache.clear()
        engine = onnx_backend.OnnxBackend(cache, lambda: model, self.device, self.threads, self.image_size,
                                          self.context_length)  # fmt: skip
        try:
            for step, tower in enumerate(("image", "text")):
                report(Progress("preparing model", step, 3, f"exporting the {tower} tower"))
                engine.prepare(tower)
        except onnx_backend.OnnxExportError as exc:
            if self.requested_backend == "onnx":
                raise ModelUnavailableError(f"cannot use ONNX Runtime for {self.key}: {exc}") from exc
            log.warning("using torch for %s: %s", self.key, exc)
            cache.clear()
            cache.write_meta({"preprocess": dict(model.visual.preprocess_cfg), "choice": "torch",
                              "machine": machine_id(), "reason": str(exc)})  # fmt: skip
            return None
        meta: dict = {"preprocess": dict(model.visual.preprocess_cfg), "machine": machine_id()}
        if self.requested_backend == "auto":
            report(Progress("preparing model", 2, 3, "timing the backends"))
            meta["timings"] = _race(
                TorchBackend(model, self.device),
                engine,
                self.image_size,
                self.batch_size,
                tokens=tokenizer(["a red leather armchair with wooden legs"]),
            )
            meta["choice"] = _verdict(meta["timings"])
            log.info("backend self-benchmark for %s: %s -> %s", self.key, meta["timings"], meta["choice"])
            if meta["choice"] == "torch":  # keep the verdict, not 100s of MB of unused export
                engine.close()
                cache.clear(keep_meta=True)
        else:
            meta["choice"] = "onnx"
        cache.write_meta(meta)
        report(Progress("preparing model", 3, 3, f"{meta['choice']} chosen"))
        return meta

    def _create(self, progress: DownloadProgress | None) -> tuple[object, object, object]:
        import torch

        open_clip = _open_clip()
        device = self.device
        kwargs: dict = {"device": device}
        pretrained = self.pretrained
        if pretrained.lower() in NO_WEIGHTS:
            weights = None
        elif weights_are_file(pretrained):
            weights = str(Path(pretrained).expanduser())
            if not Path(weights).is_file():
                raise ModelUnavailableError(f"weights file not found: {weights}")
        else:
            cfg = open_clip.get_pretrained_cfg(self.model_name, pretrained)
            if not cfg:
                tags = ", ".join(open_clip.list_pretrained_tags_by_model(self.model_name)) or "none"
                raise ModelUnavailableError(
                    f"unknown pretrained weights {pretrained!r} for model {self.model_name}; "
                    f"available: {tags} (or a path to a weights file, or 'none')"
                )
            weights = fetch_pretrained(self.model_name, pretrained, cfg, self.cache_dir, progress)
            # The tag's preprocessing (mean/std/interpolation) and activation must follow the weights.
            for ours, theirs in (("image_mean", "mean"), ("image_std", "std"),
                                 ("image_interpolation", "interpolation"), ("image_resize_mode", "resize_mode")):  # fmt: skip
                if cfg.get(theirs) is not None:
                    kwargs[ours] = cfg[theirs]
            if cfg.get("quick_gelu"):
                kwargs["force_quick_gelu"] = True
        try:
            with _build_lock:
                if weights is None:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(RANDOM_INIT_SEED)
                        model, _, transform = open_clip.create_model_and_transforms(self.model_name, **kwargs)
                else:
                    model, _, transform = open_clip.create_model_and_transforms(
                        self.model_name, pretrained=weights, **kwargs
                    )
        except (EOFError, pickle.UnpicklingError) as exc:
            # A weights file that is not a checkpoint (truncated, another format): torch's own
            # message is a page of advice about weights_only that does not apply.
            raise ModelUnavailableError(
                f"cannot load model {self.model_name} ({pretrained}): the file is not a model checkpoint"
            ) from exc
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            raise ModelUnavailableError(f"cannot load model {self.model_name} ({pretrained}): {exc}") from exc
        model.eval()
        return model, transform, open_clip.get_tokenizer(self.model_name)

    # --- embedding -----------------------------------------------------------------------

    def preprocess(self, image) -> object:
        """PIL RGB image -> model input (thread-safe; runs in decode workers): a float32 numpy
        array on the ONNX backend, a torch tensor on the torch backend."""
        if self._transform is None and self._preprocessor is None:
            self.load()
        lean = self._preprocessor
        if lean.resizes_shortest_side if lean is not None else _resizes_shortest_side(self._transform):
            # The model sees only the centre square; a 65000x1 strip resized by its short side
            # would otherwise become billions of pixels. Cutting the far ends first leaves the
            # centre (up to resampling at its edges); images up to 32:1 are not touched at all.
            from visualfinder.ingest.imaging import crop_to_aspect  # with PIL: not for text alone

            image = crop_to_aspect(image, MAX_MODEL_ASPECT)
        if lean is not None:
            return lean(image)
        if self._pixel_steps is None:
            self._pixel_steps = _split_transform(self._transform)
        pil_steps, mean_std = self._pixel_steps
        if mean_std is None:
            return self._transform(image)
        for step in pil_steps:
            image = step(image)
        return _to_normalised_tensor(image, *mean_std)

    def embed_batch(self, tensors: Sequence) -> np.ndarray:
        """Preprocessed images (numpy arrays or torch tensors) -> (n, dim) float32 unit vectors."""
        self.load()
        if (
            self._stager is not None
            and isinstance(tensors, (list, tuple))
            and not getattr(tensors[0], "is_cuda", True)
        ):
            # CPU tensors to CUDA: stacked into a pinned buffer, copied without blocking the host.
            engine = self._engine
            return engine.encode_image(self._stager.to_device(tensors, self.device, engine.dtype))
        if isinstance(tensors, np.ndarray):
            batch = tensors
        elif len(tensors) and all(isinstance(t, np.ndarray) for t in tensors):
            batch = np.stack(list(tensors))
        else:
            import torch

            batch = (
                tensors
                if isinstance(tensors, torch.Tensor)
                else torch.stack([torch.as_tensor(t) for t in tensors])
            )
        return self._engine.encode_image(batch)

    def embed_images(self, images: Sequence) -> np.ndarray:
        """PIL RGB images -> (n, dim) float32 unit vectors."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [
            self.embed_batch([self.preprocess(img) for img in images[i : i + self.batch_size]])
            for i in range(0, len(images), self.batch_size)
        ]
        return np.vstack(out)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) float32 unit vectors from the CLIP text tower."""
        self.load()
        if self._tokenizer is None:  # the ONNX engine's: the numpy one, else open_clip's
            self._tokenizer = _text_tokenizer(self.model_name)
        return self._engine.encode_text(self._tokenizer(list(texts)))


def machine_id() -> str:
    """What a backend verdict holds for: this host, its CPU architecture and core count."""
    return f"{platform.node()} {platform.machine()} {os.cpu_count()}"


@functools.cache
def _text_tokenizer(model: str):
    """The tokenizer of a model on the ONNX backend (once per process): the numpy one where it
    serves the model, else open_clip's (which imports torch)."""
    from visualfinder.models.tokenizer import lean_tokenizer

    lean = lean_tokenizer(model, model_config(model))
    return lean if lean is not None else _open_clip().get_tokenizer(model)


def _lean_preprocessor(key: str, cfg: dict):
    """The numpy preprocessing of a model's preprocess config, or None (open_clip's then)."""
    from visualfinder.models.preprocess import Preprocessor, PreprocessSpec

    try:
        return Preprocessor(PreprocessSpec.from_config(cfg))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        log.info("images for %s go through open_clip's preprocessing: %s", key, exc)
        return None


def _progress_to_download(report: ProgressCallback) -> DownloadProgress:
    """Byte counts of a weights download as the job's progress."""

    def downloaded(done: int, total: int | None) -> None:
        report(Progress("downloading model", done, total or 0))

    return downloaded


def _split_transform(transform) -> tuple[list, tuple[np.ndarray, np.ndarray] | None]:
    """Split open_clip's eval transform into its PIL steps and the Normalize mean/std.

    The tail (to tensor, normalize) then runs in numpy: torch ops called from decode workers
    start their own OpenMP teams, which on a small CPU fight the model's threads. The values
    still come from the model's own transform. (steps, None) when the transform has another shape.
    """
    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2:
        return steps, None
    to_tensor, normalize = steps[-2], steps[-1]
    if (
        type(to_tensor).__name__ not in ("ToTensor", "MaybeToTensor")
        or type(normalize).__name__ != "Normalize"
    ):
        return steps, None
    if getattr(normalize, "inplace", False):
        return steps, None
    mean = np.asarray(normalize.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(normalize.std, dtype=np.float32).reshape(-1, 1, 1)
    return steps[:-2], (mean, std)


def _to_normalised_tensor(image, mean: np.ndarray, std: np.ndarray):
    """PIL image -> float32 CHW tensor, (pixel / 255 - mean) / std, as ToTensor + Normalize do."""
    import torch

    if not hasattr(image, "mode"):  # already a tensor (a custom transform): finish in torch
        return (torch.as_tensor(image) - torch.from_numpy(mean)) / torch.from_numpy(std)
    from visualfinder.models.preprocess import normalised_pixels

    return torch.from_numpy(normalised_pixels(image, mean, std))


# ONNX keeps a tie: a process on it starts without importing torch (about a second, at every
# CLI search and app start), and a shared machine's noise must not flip the verdict to torch.
ONNX_TIE_MARGIN = 1.15


def _race(torch_engine: Backend, onnx_engine: Backend, image_size: int, batch: int,
          tokens=None) -> dict[str, float]:  # fmt: skip
    """Seconds per image of each backend on one batch, and (given `tokens`: one tokenised
    query) seconds per text query, as `<backend>_text`; medians of alternating runs."""
    import time

    import torch

    pixels = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
    # name -> (one timed call, how many items it embeds)
    calls: dict[str, tuple[Callable[[], object], int]] = {
        "torch": (lambda: torch_engine.encode_image(pixels), batch),
        "onnx": (lambda: onnx_engine.encode_image(pixels), batch),
    }
    if tokens is not None:
        as_numpy = np.asarray(tokens, dtype=np.int64)
        calls["torch_text"] = (lambda: torch_engine.encode_text(torch.as_tensor(as_numpy)), 1)
        calls["onnx_text"] = (lambda: onnx_engine.encode_text(as_numpy), 1)
    for engine in (torch_engine, onnx_engine):
        engine.encode_image(pixels[:2])  # warm-up: first runs allocate and plan
    for name in ("torch_text", "onnx_text"):
        if name in calls:
            calls[name][0]()  # warm-up: the text sessions open and plan
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(3):  # alternate, so a burst of load on a shared machine hits both
        for name, (call, count) in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) / count)
    return {name: float(np.median(t)) for name, t in times.items()}


def _verdict(timings: dict[str, float]) -> str:
    """The backend the race picks: the one that embeds an image and a text query sooner, ONNX
    unless torch is faster by more than ONNX_TIE_MARGIN (a race without text: images alone)."""

    def cost(backend: str) -> float:
        return timings[backend] + timings.get(f"{backend}_text", 0.0)

    return "onnx" if cost("onnx") <= cost("torch") * ONNX_TIE_MARGIN else "torch"


def _normalise(features) -> np.ndarray:
    import torch

    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


def _resizes_shortest_side(transform: object) -> bool:
    """True for open_clip's default preprocessing: resize the short side, then crop the centre."""
    steps = getattr(transform, "transforms", None) or [None]
    size = getattr(steps[0], "size", None)
    if type(steps[0]).__name__ != "Resize":
        return False
    return isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 1)


def known_models() -> list[str]:
    """Every model name open_clip can build (ours included), sorted; imports open_clip."""
    return sorted(_open_clip().list_models(), key=str.casefold)


def known_pretrained(model: str) -> list[str]:
    """The pretrained weight tags open_clip can download for `model` (empty if it knows none)."""
    try:
        return list(_open_clip().list_pretrained_tags_by_model(model))
    except (KeyError, RuntimeError, ValueError):  # a name open_clip does not know
        return []
