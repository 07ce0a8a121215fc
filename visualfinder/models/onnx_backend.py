"""ONNX Runtime backend: the open_clip image and text towers exported to ONNX once, run by onnxruntime.

Exports are cached in the data dir (`onnx/<model>/`), keyed by the model key (model + weights)
and a fingerprint of what produced them (weights file stamp, torch and open_clip versions,
export format). A mismatch re-exports. Each export is checked against torch on a fixed input
before it is used; under `backend = "auto"` the first export also times both backends once on
a batch and keeps the faster one (the verdict is cached with the export). onnxruntime runs on
CPU, and on CUDA or CoreML where its build has that execution provider.

Each tower's session opens only when a command needs it (an indexing run never opens the text
tower), from the graph onnxruntime optimised the first time and saved beside the export (one
folder per host and onnxruntime version: the optimised graph may hold CPU-specific layouts).
The optimised graph keeps its weights in a file of their own (external initializers), which
onnxruntime memory-maps instead of parsing and copying 100s of MB: a session opens in tens of
milliseconds. A one-shot process (`search`) also skips prepacking the weights, which costs
more at load than it saves on one query; long-running ones (index, watch, the app, serve) keep
it. A missing or damaged export (or optimised graph) is made again, with one line in the log.

An int8 model (precision "int8", its own model key and export folder) is the fp32 export,
checked, then quantized by onnxruntime's dynamic quantization: the weights of every matrix
product in 8 bits per output channel, the activations in 8 bits per tensor measured at run
time (VNNI on x86). It is checked too, by cosine against torch's fp32 vectors.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from visualfinder.models.short_text import short_text_tower, trimmed

log = logging.getLogger(__name__)

# 2: the text tower with a dynamic sequence axis (models/short_text.py); older exports re-export.
EXPORT_FORMAT = 2
OPSET = 17
META_FILE = "export.json"
# The optimised graph of a tower: a folder holding the graph and its weights (memory-mapped).
OPTIMIZED_FORMAT = 2
OPTIMIZED_GRAPH = "graph.onnx"
OPTIMIZED_WEIGHTS = "weights.bin"
# Largest difference between the unit vectors of torch and of the export on the check input.
MAX_DEVIATION = 2e-3
# Lowest cosine between an int8 export's unit vectors and torch's fp32 ones on the check input
# (ViT-B-32: ~0.9999); below it the quantized model is refused (precision int8 cannot be used).
MIN_INT8_COSINE = 0.99

ModelFactory = Callable[[], object]  # returns the loaded open_clip model (torch), on CPU


class OnnxExportError(RuntimeError):
    """A tower could not be exported, or its export does not reproduce torch's output."""


def available() -> bool:
    """True when onnxruntime is installed (it is optional: torch alone always works)."""
    return importlib.util.find_spec("onnxruntime") is not None


# The accelerated execution providers tried for a torch device, best first.
DEVICE_PROVIDERS = {"cuda": ["CUDAExecutionProvider"], "mps": ["CoreMLExecutionProvider"]}


def providers_for(device: str, present: list[str] | None = None) -> list[str]:
    """Execution providers for a device, best first, among those this onnxruntime build has
    (`present`: what the build offers, `onnxruntime.get_available_providers()` by default)."""
    if present is None:
        import onnxruntime as ort

        present = ort.get_available_providers()
    wanted = DEVICE_PROVIDERS.get(device, [])
    return [p for p in wanted if p in present] + ["CPUExecutionProvider"]


def accelerates(device: str) -> bool:
    """onnxruntime can run on this device itself: on CPU always, on a GPU when this build has
    the device's provider (onnxruntime-gpu for CUDA; CoreML in the macOS wheels)."""
    return device == "cpu" or len(providers_for(device)) > 1


def fingerprint(model_key: str, weights_file: str | None) -> str:
    """What an export depends on besides the model key: a change means export again."""
    parts = [f"format {EXPORT_FORMAT}", f"opset {OPSET}", model_key]
    for dist in ("torch", "open_clip_torch"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} ?")
    if weights_file:
        try:
            st = os.stat(weights_file)
            parts.append(f"weights {st.st_size} {st.st_mtime_ns}")
        except OSError:
            parts.append("weights missing")
    return " | ".join(parts)


class OnnxCache:
    """The export folder of one model in the data dir, with its metadata file."""

    def __init__(self, root: Path, model_key: str, stamp: str, precision: str = "fp32"):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_key).strip("_")[:60]
        digest = hashlib.sha1(model_key.encode("utf-8")).hexdigest()[:8]
        self.dir = Path(root) / f"{slug}-{digest}"
        self.model_key = model_key
        self.stamp = stamp
        self.precision = precision
        self._lock = threading.Lock()

    def path(self, tower: str) -> Path:
        return self.dir / f"{tower}.onnx"

    def meta(self) -> dict | None:
        """The cached export's metadata, or None when it is missing or was made for something else."""
        try:
            meta = json.loads((self.dir / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("model_key") != self.model_key or meta.get("stamp") != self.stamp:
            return None
        return meta

    def write_meta(self, meta: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = dict(meta, model_key=self.model_key, stamp=self.stamp)
        tmp = self.dir / f".{META_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, self.dir / META_FILE)

    def optimized_path(self, tower: str, providers: list[str]) -> Path:
        """The folder of onnxruntime's optimised graph of a tower (graph and weights) for this
        host and build."""
        import onnxruntime as ort

        what = f"{OPTIMIZED_FORMAT} {platform.node()} {platform.machine()} {ort.__version__} {','.join(providers)}"
        return self.dir / f"{tower}.opt-{hashlib.sha1(what.encode('utf-8')).hexdigest()[:10]}"

    def forget_optimized(self, tower: str) -> None:
        """Remove the tower's optimised graphs (of every host; the older single-file ones too)."""
        for path in self.dir.glob(f"{tower}.opt-*"):
            _remove(path)

    def clear(self, keep_meta: bool = False) -> None:
        """Forget the export (a stale or failed one) so the next use starts over."""
        for tower in ("image", "text"):
            self.path(tower).unlink(missing_ok=True)
            self.forget_optimized(tower)
        if not keep_meta:
            (self.dir / META_FILE).unlink(missing_ok=True)

    def export(self, tower: str, model, example) -> Path:
        """Export one tower of a torch open_clip model and check it against torch."""
        import torch

        dest = self.path(tower)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        module = _tower_module(model, tower).eval()
        name = "pixels" if tower == "image" else "tokens"
        axes = {0: "batch", 1: "length"} if getattr(module, "short_text", False) else {0: "batch"}
        # The model may live on a GPU (CUDA/CoreML providers run the export there); the check
        # runs onnxruntime on CPU, so inputs go to the model's device and outputs come back.
        example = example.to(next(module.parameters()).device)
        started = time.perf_counter()
        quantized = tmp.with_name(f"{tmp.name}.int8")
        try:
            # Not under no_grad/inference_mode: there nn.MultiheadAttention takes its fused fast
            # path (aten::_native_multi_head_attention), which has no ONNX export.
            with warnings.catch_warnings():  # tracer chatter about shape checks, not problems
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, (example,), str(tmp), input_names=[name], output_names=["features"],
                    dynamic_axes={name: axes, "features": {0: "batch"}}, opset_version=OPSET,
                    do_constant_folding=True, dynamo=False,
                )  # fmt: skip
            inputs = [example] + ([example[:, :9]] if 1 in axes else [])  # and a shorter text
            deviation, _ = _agreement(tmp, module, name, inputs)
            if not deviation <= MAX_DEVIATION:
                raise OnnxExportError(f"the {tower} export differs from torch by {deviation:.2e}")
            if self.precision == "int8":
                _quantize(tmp, quantized)
                deviation, cosine = _agreement(quantized, module, name, inputs)
                if not cosine >= MIN_INT8_COSINE:
                    raise OnnxExportError(
                        f"the int8 {tower} tower agrees with fp32 only to cosine {cosine:.4f} "
                        f"(needs {MIN_INT8_COSINE}): use model_precision fp32 for this model"
                    )
                os.replace(quantized, tmp)
            self.forget_optimized(tower)
            os.replace(tmp, dest)
        except OnnxExportError:
            raise
        except Exception as exc:  # the exporter raises many types; all mean "no ONNX for this model"
            raise OnnxExportError(f"cannot export the {tower} tower to ONNX: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
            quantized.unlink(missing_ok=True)
        log.info("exported the %s tower of %s to %s in %.1fs (max deviation %.1e)", tower, self.model_key,
                 dest, time.perf_counter() - started, deviation)  # fmt: skip
        return dest


class OnnxBackend:
    """Runs exported towers with onnxruntime; exports a tower on its first use if needed."""

    name = "onnx"

    def __init__(
        self,
        cache: OnnxCache,
        model_factory: ModelFactory,
        device: str = "cpu",
        threads: int = 0,
        image_size: int = 224,
        context_length: int = 77,
        prepack: bool = True,
    ):
        self.cache = cache
        self._model_factory = model_factory
        self.providers = providers_for(device)
        self.threads = threads
        # Prepacked weights run faster but take long to build at load (and 2x the memory): a
        # process that embeds one query and exits (prepack=False) opens its session ~10x faster.
        self.prepack = prepack
        self.image_size = image_size
        self.context_length = context_length
        self._sessions: dict[str, object] = {}
        self._short_text: bool | None = None  # does the text session take any sequence length
        self._lock = threading.Lock()

    def prepare(self, tower: str) -> None:
        """Make sure the tower is exported and its session open (export takes seconds to a minute)."""
        self._session(tower)

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, size, size) float32 pixels -> (n, dim) unit vectors."""
        out = self._session("image").run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]
        return _unit(out)

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        """(n, context) int64 tokens -> (n, dim) unit vectors; an export with a dynamic sequence
        axis (models/short_text.py) runs only the positions the texts use."""
        session = self._session("text")
        if self._short_text is None:
            self._short_text = not isinstance(session.get_inputs()[0].shape[1], int)
        if self._short_text:
            tokens = trimmed(tokens)
        out = session.run(None, {"tokens": np.ascontiguousarray(tokens, dtype=np.int64)})[0]
        return _unit(out)

    def close(self) -> None:
        """Drop the open sessions (their files can then be deleted, on Windows too)."""
        with self._lock:
            self._sessions.clear()

    def _session(self, tower: str):
        session = self._sessions.get(tower)
        if session is not None:
            return session
        with self._lock:
            if tower not in self._sessions:
                self._sessions[tower] = self._open(tower)
            return self._sessions[tower]

    def _open(self, tower: str):
        """The tower's session: its saved optimised graph, else the export (saving the
        optimised graph for next time), else a new export when the file is missing or damaged."""
        path = self.cache.path(tower)
        if not path.is_file():
            if self.cache.meta() is not None:
                log.warning(
                    "the ONNX %s tower of %s is missing; exporting it again", tower, self.cache.model_key
                )
            self._export(tower)
        optimized = self.cache.optimized_path(tower, self.providers)
        graph = optimized / OPTIMIZED_GRAPH
        if graph.is_file():
            try:
                return _session(graph, self.providers, self.threads, self.prepack, optimized=True)
            except Exception as exc:  # onnxruntime's errors have no common type; a damaged copy
                log.info("ignoring the damaged optimised graph %s: %s", optimized, _first_line(exc))
                _remove(optimized)
        for legacy in self.cache.dir.glob(f"{tower}.opt-*.onnx"):  # the single-file graphs before format 2
            _remove(legacy)
        try:
            return _session(path, self.providers, self.threads, self.prepack, save_to=optimized)
        except Exception as exc:  # a damaged export: another export replaces it
            log.warning("the ONNX %s tower of %s is damaged (%s); exporting it again", tower,
                        self.cache.model_key, _first_line(exc))  # fmt: skip
            path.unlink(missing_ok=True)
            self.cache.forget_optimized(tower)
            self._export(tower)
            return _session(path, self.providers, self.threads, self.prepack, save_to=optimized)

    def _export(self, tower: str) -> None:
        import torch

        model = self._model_factory()
        with self.cache._lock:
            if tower == "image":
                example = torch.randn(
                    2, 3, self.image_size, self.image_size, generator=torch.Generator().manual_seed(0)
                )
            else:
                example = torch.randint(
                    1, 400, (2, self.context_length), generator=torch.Generator().manual_seed(0)
                )
            self.cache.export(tower, model, example)


def _agreement(path: Path, module, name: str, inputs: list) -> tuple[float, float]:
    """(largest difference, lowest cosine) between the unit vectors of the graph at `path`
    (onnxruntime on CPU) and of the torch `module`, over the check `inputs`."""
    import torch

    session = _session(path, ["CPUExecutionProvider"], threads=0)
    deviation, cosine = 0.0, 1.0
    for example in inputs:
        with torch.inference_mode():
            expected = _unit(module(example).float().cpu().numpy())
        got = _unit(session.run(None, {name: example.cpu().numpy()})[0])
        deviation = max(deviation, float(np.abs(got - expected).max()))
        cosine = min(cosine, float((got * expected).sum(axis=1).min()))
    return deviation, cosine


def _quantize(source: Path, dest: Path) -> None:
    """onnxruntime's dynamic int8 quantization of the matrix products with constant weights
    (the projections and MLPs; attention's activation-by-activation products stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():  # its advice to pre-process the model first (shape inference)
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(source), str(dest), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"], extra_options={"MatMulConstBOnly": True},
        )  # fmt: skip


def _tower_module(model, tower: str):
    """A torch module running one tower of an open_clip model (what gets exported); the text
    tower over any sequence length where models/short_text.py says it holds."""
    import torch

    if tower == "text":
        short = short_text_tower(model)
        if short is not None:
            short.short_text = True
            return short

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.encode_image(x) if tower == "image" else self.model.encode_text(x)

    return Tower()


def _session(path: Path, providers: list[str], threads: int, prepack: bool = True, *,
             optimized: bool = False, save_to: Path | None = None):  # fmt: skip
    """An InferenceSession. `optimized`: the graph was optimised already (loads without redoing
    it); `save_to`: keep the optimised graph in that folder, its weights in a file beside it
    (written in a folder aside, then moved into place: a reader sees all of it or nothing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL if optimized else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    tmp = save_to.with_name(f".{save_to.name}.{os.getpid()}.{threading.get_ident()}.tmp") if save_to else None
    if tmp is not None:
        _remove(tmp)
        tmp.mkdir(parents=True)
        options.optimized_model_filepath = str(tmp / OPTIMIZED_GRAPH)
        # Every weight but the smallest goes to one file next to the graph (a relative name).
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", OPTIMIZED_WEIGHTS
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
        # Its one warning (the saved graph may be specific to this CPU) is why the name holds the host.
        options.log_severity_level = 3
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads > 0:
        options.intra_op_num_threads = threads
    # Spinning workers burn a core while the pipeline's decoders need it; yield instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
        if tmp is not None and save_to is not None and (tmp / OPTIMIZED_GRAPH).is_file():
            _remove(save_to)  # a damaged one, or another process's that lost the race
            try:
                os.replace(tmp, save_to)
            except OSError:  # another process just saved its own (or Windows holds it open)
                pass
    finally:
        if tmp is not None:
            _remove(tmp)
    return session


def _remove(path: Path) -> None:
    """Delete a file or a folder, if there (a file that cannot go now is left for next time)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms == 0, 1.0, norms)
