"""CLIP embeddings with open_clip: model loading (pretrained tag, local weights file or random),
device choice (cuda > mps > cpu), fp16 on GPU, batched L2-normalised image and text vectors.

The model loads lazily, once, under a lock, and then stays loaded for the life of the process.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from visualfinder.errors import ModelUnavailableError

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
NO_WEIGHTS = ("none", "random", "")
# Seed for random-init models ("--pretrained none"): tests and benchmarks are reproducible.
RANDOM_INIT_SEED = 0

DownloadProgress = Callable[[int, int | None], None]  # (bytes done, bytes total or None)

_open_clip_lock = threading.Lock()
_configs_registered = False
# Loaded models by (model key, device): reopening a library (or a test) never loads twice.
_loaded: dict[tuple[str, str], tuple[object, object, object]] = {}


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


def resolve_device(requested: str = "auto") -> str:
    """'auto' picks cuda, then Apple mps, then cpu; an explicit device must be available."""
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


def model_key(model: str, pretrained: str) -> str:
    """Identity of the vectors a model produces; stored with every embedding."""
    if pretrained.lower() in NO_WEIGHTS:
        return f"{model}/random-seed{RANDOM_INIT_SEED}"
    if weights_are_file(pretrained):
        path = Path(pretrained).expanduser()
        size = path.stat().st_size if path.is_file() else 0
        return f"{model}/file:{path.name}:{size}"
    return f"{model}/{pretrained}"


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
    """One open_clip model turning images and text into unit vectors of `dim` floats."""

    def __init__(
        self,
        model: str,
        pretrained: str,
        device: str = "auto",
        *,
        cache_dir: str | Path | None = None,
        batch_size: int = 0,
    ):
        self.model_name = model
        self.pretrained = pretrained
        self.requested_device = device
        self.cache_dir = str(cache_dir) if cache_dir else None
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._model = None
        self._transform = None
        self._tokenizer = None
        self._device: str | None = None
        self.key = model_key(model, pretrained)
        cfg = model_config(model)
        self.dim = int(cfg["embed_dim"])
        size = cfg.get("vision_cfg", {}).get("image_size", 224)
        self.image_size = int(size if isinstance(size, int) else max(size))

    # --- loading -------------------------------------------------------------------------

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self.requested_device)
        return self._device

    @property
    def batch_size(self) -> int:
        if self._batch_size > 0:
            return self._batch_size
        return 64 if self.device in ("cuda", "mps") else 16

    def load(self, progress: DownloadProgress | None = None) -> Embedder:
        """Load the model (downloading weights on first use); safe to call from any thread."""
        if self._model is not None:
            return self
        with self._lock:
            if self._model is None:
                self._load(progress)
        return self

    def _load(self, progress: DownloadProgress | None) -> None:
        cached = _loaded.get((self.key, self.device))
        if cached is None:
            cached = self._create(progress)
            _loaded[(self.key, self.device)] = cached
        self._model, self._transform, self._tokenizer = cached
        log.info("loaded %s on %s", self.key, self.device)

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
            if weights is None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(RANDOM_INIT_SEED)
                    model, _, transform = open_clip.create_model_and_transforms(self.model_name, **kwargs)
            else:
                model, _, transform = open_clip.create_model_and_transforms(
                    self.model_name, pretrained=weights, **kwargs
                )
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            raise ModelUnavailableError(f"cannot load model {self.model_name} ({pretrained}): {exc}") from exc
        model.eval()
        return model, transform, open_clip.get_tokenizer(self.model_name)

    # --- embedding -----------------------------------------------------------------------

    def preprocess(self, image) -> object:
        """PIL RGB image -> model input tensor (thread-safe; runs in decode workers)."""
        if self._transform is None:
            self.load()
        return self._transform(image)

    def embed_batch(self, tensors: Sequence) -> np.ndarray:
        """Preprocessed image tensors -> (n, dim) float32 unit vectors."""
        import torch

        self.load()
        batch = torch.stack(list(tensors)) if not isinstance(tensors, torch.Tensor) else tensors
        with torch.inference_mode(), self._autocast():
            features = self._model.encode_image(batch.to(self.device, non_blocking=True))
        return _normalise(features)

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
        import torch

        self.load()
        tokens = self._tokenizer(list(texts)).to(self.device)
        with torch.inference_mode(), self._autocast():
            features = self._model.encode_text(tokens)
        return _normalise(features)

    def _autocast(self):
        import torch

        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        if self.device == "mps":
            return torch.autocast("mps", dtype=torch.float16)
        return nullcontext()


def _normalise(features) -> np.ndarray:
    import torch

    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


def fetch_pretrained(
    model: str, tag: str, cfg: dict, cache_dir: str | None, progress: DownloadProgress | None
) -> str:
    """Return a local path to the tag's weights, downloading them (with progress) if needed."""
    hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    where = f"https://huggingface.co/{os.path.split(hub)[0]}" if hub else url
    try:
        if hub:
            from huggingface_hub import hf_hub_download

            repo_id, filename = os.path.split(hub)
            filename = filename or "open_clip_pytorch_model.bin"
            try:
                return hf_hub_download(repo_id, filename, cache_dir=cache_dir, local_files_only=True)
            except Exception:  # not cached yet: download below
                pass
            _check_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
            kwargs = {"tqdm_class": _forwarding_tqdm(progress)} if progress is not None else {}
            log.warning("downloading %s (%s) weights from %s (first run only)", model, tag, where)
            return hf_hub_download(repo_id, filename, cache_dir=cache_dir, **kwargs)
        if url:
            from open_clip.pretrained import download_pretrained_from_url

            _check_reachable(url)
            return download_pretrained_from_url(url, cache_dir=cache_dir)
    except Exception as exc:  # network, auth and cache errors all mean: no weights here
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelUnavailableError(
            f"cannot get the weights for {model} ({tag}): {detail}. The first run downloads them from "
            f"{where}; connect to the internet once, or download the weights file there and pass its "
            f"path with --pretrained /path/to/open_clip_pytorch_model.bin (or 'none' for an untrained model)."
        ) from exc
    raise ModelUnavailableError(f"pretrained tag {tag!r} of {model} names no download location")


def _check_reachable(url: str, timeout: float = 5.0) -> None:
    """Fail in seconds when offline, instead of the hub client's minute of retries."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"{host} is unreachable ({exc.strerror or exc}); you appear to be offline"
        ) from exc


def _forwarding_tqdm(progress: DownloadProgress):
    """A tqdm class that reports byte progress to a callback instead of the terminal."""
    from tqdm.auto import tqdm

    class ForwardingTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            result = super().update(n)
            progress(int(self.n), int(self.total) if self.total else None)
            return result

        def close(self):
            fh = self.fp
            super().close()
            fh.close()

    return ForwardingTqdm


def known_models() -> list[str]:
    """Every model name open_clip can build (ours included), sorted; imports open_clip."""
    return sorted(_open_clip().list_models(), key=str.casefold)


def known_pretrained(model: str) -> list[str]:
    """The pretrained weight tags open_clip can download for `model` (empty if it knows none)."""
    try:
        return list(_open_clip().list_pretrained_tags_by_model(model))
    except (KeyError, RuntimeError, ValueError):  # a name open_clip does not know
        return []
