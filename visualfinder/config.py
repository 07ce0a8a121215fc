"""Settings: the one place that decides where data lives and how the library behaves.

Precedence, lowest first: defaults < `settings.toml` in the data dir < environment variables
< explicit overrides (CLI flags, the GUI's settings dialog).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
import tomli_w

from visualfinder.errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

APP_NAME = "visualfinder"
SETTINGS_FILE = "settings.toml"

ENV_DATA_DIR = "VISUALFINDER_DATA_DIR"
ENV_MODEL = "VISUALFINDER_MODEL"
ENV_PRETRAINED = "VISUALFINDER_PRETRAINED"
ENV_DEVICE = "VISUALFINDER_DEVICE"
ENV_BACKEND = "VISUALFINDER_BACKEND"
ENV_PRECISION = "VISUALFINDER_MODEL_PRECISION"

# ViT-B-32 at 256 px trained on DataComp-1B: better retrieval than OpenAI's B/32, no slow
# QuickGELU, and ~13 images/s on a 2-core laptop CPU. See README "Choosing a model".
DEFAULT_MODEL = "ViT-B-32-256"
DEFAULT_PRETRAINED = "datacomp_s34b_b86k"

METRICS = ("cosine", "ip", "l2")
DEVICES = ("auto", "cpu", "cuda", "mps")
BACKENDS = ("auto", "torch", "onnx")
# The model's arithmetic: fp32, or int8 (ONNX Runtime's dynamic quantization on the CPU).
PRECISIONS = ("fp32", "int8")
DECODE_BACKENDS = ("auto", "threads", "processes", "gpu")
INDEX_DTYPES = ("f16", "f32", "i8")
# How the folder watcher learns about changes: the OS's notifications (inotify, FSEvents,
# ReadDirectoryChanges), periodic rescans, or notifications with a fallback to rescans where
# they cannot work (network drives, inotify limits).
WATCH_POLLING = ("auto", "always", "never")
# nmslib is deprecated in OpenSearch 3 and refused; "auto" picks faiss, or lucene where the
# cluster's faiss cannot do the library's metric (cosine before OpenSearch 2.19).
REMOTE_ENGINES = ("auto", "faiss", "lucene")


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass
class Settings:
    """User preferences plus the defaults used when a new library is created."""

    data_dir: Path = field(default_factory=default_data_dir)
    model: str = DEFAULT_MODEL
    # An open_clip pretrained tag, a path to a local weights file, or "none" (random init).
    pretrained: str = DEFAULT_PRETRAINED
    device: str = "auto"
    # What runs the model: torch, onnx (ONNX Runtime, exported once into the data dir) or auto
    # (on CPU the faster of the two, measured once per model; torch on a GPU).
    backend: str = "auto"
    # The model's arithmetic for a *new* library (an existing one keeps its own; switch-model
    # changes it): fp32, or int8 (weights and activations in 8 bits on ONNX Runtime, CPU only):
    # ~2x faster images on a CPU, vectors within ~1e-3 cosine of fp32's but not the same ones.
    model_precision: str = "fp32"
    # Intra-op threads of the model (0 = all cores).
    model_threads: int = 0
    # Distance metric of a *new* library; an existing library keeps the metric in its catalog.
    metric: str = "cosine"
    # Vectors in the HNSW index: i8 (default) keeps 1M x 512 in ~0.77 GB and builds ~2x faster
    # than f16; the planner re-scores the top candidates from the catalog's float16 vectors, so
    # results and scores match f16's (tests/benchmarks/test_search_scale.py, README Performance).
    index_dtype: str = "i8"
    hnsw_connectivity: int = 16
    hnsw_expansion_add: int = 128
    # 128: recall@10 >= 0.98 at 1M embedding-like vectors (64 gave ~0.90), p50 ~1-2 ms.
    hnsw_expansion_search: int = 128
    # Open the saved index memory-mapped: search is ready at once and pages load on use; the
    # first change (indexing) copies it into memory. Off on Windows, where a file mapped by
    # one process (the app) cannot be replaced by another's save (the CLI indexing).
    index_memory_map: bool = sys.platform != "win32"
    # The planner searches exactly when a filter leaves at most this many candidates (and an
    # unfiltered library of up to 1/8 of it). Measured at 1M: exact over 10k candidates ~20 ms,
    # over 100k ~240 ms, while filtered HNSW over 100k took ~16 ms; they cross near 20k.
    exact_search_max_candidates: int = 20_000
    thumbnail_size: int = 256
    # 0 = choose automatically for the device.
    batch_size: int = 0
    decode_workers: int = 0
    # Where files are decoded: threads, processes (worker processes, no GIL), gpu (JPEGs on the
    # CUDA device, the rest in processes) or auto (processes on >= 4 cores or a GPU, the GPU's
    # JPEG decoder on CUDA, threads on a small CPU box and for a handful of files).
    decode_backend: str = "auto"
    # Refuse to decode images above this many pixels (decompression-bomb guard).
    max_image_pixels: int = 250_000_000
    # Skip a file still being read and decoded after this many seconds (0 = no limit), so one
    # pathological file or a stalled network share cannot stall indexing.
    file_time_limit_s: float = 120.0
    # Save the vector index at least this often during long indexing runs (seconds).
    index_save_interval_s: float = 300.0
    # Folder watcher. A burst of changes is indexed once it has been quiet this long (seconds).
    watch_debounce_s: float = 0.5
    # A file is read only once its size and mtime have held still this long (half-written files).
    watch_stable_s: float = 0.5
    # During an endless stream of changes, index what is ready at least this often (seconds).
    watch_max_delay_s: float = 5.0
    # auto: OS notifications, rescans for network drives or when notifications fail.
    watch_polling: str = "auto"
    # Seconds between rescans of a folder watched by polling.
    watch_poll_interval_s: float = 5.0
    # Seconds between checks that watched folders still exist (unmounted drives, moved folders).
    watch_check_interval_s: float = 2.0
    # Query images given as a URL: refuse bigger downloads, give up after this many seconds.
    url_max_bytes: int = 25 * 1024 * 1024
    url_timeout_s: float = 15.0
    # Duplicates: CLIP similarity above which two images are "visually similar" (tier 3), and
    # the lower one at which a pair is checked for being the same picture (tier 2).
    duplicate_threshold: float = 0.95
    duplicate_candidate_similarity: float = 0.90

    # --- optional sync to an OpenSearch k-NN index (visualfinder.remote) ---------------------
    # One URL, or several nodes of one cluster separated by commas. Empty: sync is off. The
    # password is never a setting: it lives in the OS keyring (visualfinder.remote.credentials).
    remote_url: str = ""
    remote_index: str = "visualfinder"
    remote_user: str = ""
    # A PEM file of CA certificates for a cluster with a private CA; empty: the system's store.
    remote_ca_bundle: str = ""
    # Turning verification off is explicit (`sync --insecure`) and warned about on every connection.
    remote_verify_tls: bool = True
    # Set for Amazon OpenSearch Service: requests are signed (SigV4) with botocore's credentials.
    remote_aws_region: str = ""
    remote_aws_service: str = "es"  # "aoss" for OpenSearch Serverless
    remote_engine: str = "auto"
    remote_timeout_s: float = 30.0
    # Retries of 429 / 5xx / timeouts, with exponential backoff and full jitter.
    remote_max_retries: int = 6
    remote_backoff_s: float = 0.5
    remote_backoff_max_s: float = 30.0
    # One _bulk request carries at most this many bytes (and documents).
    remote_bulk_max_bytes: int = 5_000_000
    remote_bulk_max_docs: int = 5000
    # Continuous mode: while the watcher or the app runs, changes go to the cluster as they
    # happen (off: only `visualfinder sync` pushes). Wait remote_push_delay_s after a change so
    # a burst goes out as one request.
    remote_live_push: bool = True
    remote_push_delay_s: float = 1.0

    # --- the HTTP API (`visualfinder serve`, visualfinder.api) -------------------------------
    # The token is never a setting: VISUALFINDER_API_TOKEN, or the data dir's api-token file.
    # image_url queries may reach loopback, private and link-local addresses only when set
    # (off: a public server cannot be made to fetch from its own network).
    api_allow_private_urls: bool = False
    # Browser origins allowed to call the API (comma-separated; "*" for any). Empty: no CORS.
    api_cors_origins: str = ""
    # False hides where files live: `path` holds the file name alone and status lists no folders.
    api_expose_paths: bool = True
    # The largest request body (uploads, product sheets); bigger ones get 413.
    api_max_upload_bytes: int = 25 * 1024 * 1024
    # Searches waiting for the model beyond this many get 429; one waiting longer than
    # api_queue_timeout_s gets 503. Both say when to retry (Retry-After).
    api_queue_size: int = 32
    api_queue_timeout_s: float = 30.0
    # One search's terms (images, texts, minus terms) share one model call: more get 422.
    api_max_query_terms: int = 32

    @property
    def settings_path(self) -> Path:
        return self.data_dir / SETTINGS_FILE

    @classmethod
    def load(cls, data_dir: str | os.PathLike | None = None, **overrides: Any) -> Settings:
        """Build settings from defaults, the data dir's settings file, env vars and overrides.

        `overrides` whose value is None are ignored, so CLI flags can be passed through as-is.
        """
        env = os.environ
        resolved_dir = Path(data_dir or env.get(ENV_DATA_DIR) or default_data_dir()).expanduser()
        values: dict[str, Any] = {}
        settings_file = resolved_dir / SETTINGS_FILE
        if settings_file.is_file():
            values.update(_read_settings_file(settings_file))
        for name, var in (("model", ENV_MODEL), ("pretrained", ENV_PRETRAINED), ("device", ENV_DEVICE),
                          ("backend", ENV_BACKEND), ("model_precision", ENV_PRECISION)):  # fmt: skip
            if env.get(var):
                values[name] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["data_dir"] = resolved_dir
        settings = cls(**_coerce(values))
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise SettingsError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if self.device not in DEVICES:
            raise SettingsError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.backend not in BACKENDS:
            raise SettingsError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.model_precision not in PRECISIONS:
            raise SettingsError(
                f"model_precision must be one of {', '.join(PRECISIONS)}, not {self.model_precision!r}"
            )
        if self.decode_backend not in DECODE_BACKENDS:
            raise SettingsError(
                f"decode_backend must be one of {', '.join(DECODE_BACKENDS)}, not {self.decode_backend!r}"
            )
        if self.index_dtype not in INDEX_DTYPES:
            raise SettingsError(
                f"index_dtype must be one of {', '.join(INDEX_DTYPES)}, not {self.index_dtype!r}"
            )
        if not self.model:
            raise SettingsError("model must not be empty")
        if self.watch_polling not in WATCH_POLLING:
            raise SettingsError(
                f"watch_polling must be one of {', '.join(WATCH_POLLING)}, not {self.watch_polling!r}"
            )
        for name in ("watch_poll_interval_s", "watch_check_interval_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in ("watch_debounce_s", "watch_stable_s", "watch_max_delay_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")
        for name in ("url_max_bytes", "url_timeout_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in ("duplicate_threshold", "duplicate_candidate_similarity"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise SettingsError(f"{name} must be a similarity between -1 and 1")
        for name in ("thumbnail_size", "hnsw_connectivity", "hnsw_expansion_add", "hnsw_expansion_search"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in ("api_max_upload_bytes", "api_queue_size", "api_queue_timeout_s", "api_max_query_terms"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        if self.file_time_limit_s < 0:
            raise SettingsError("file_time_limit_s must not be negative (0 means no limit)")
        self._validate_remote()

    def _validate_remote(self) -> None:
        if self.remote_engine == "nmslib":
            raise SettingsError("remote_engine nmslib is deprecated in OpenSearch 3; use faiss or lucene")
        if self.remote_engine not in REMOTE_ENGINES:
            raise SettingsError(
                f"remote_engine must be one of {', '.join(REMOTE_ENGINES)}, not {self.remote_engine!r}"
            )
        for url in self.remote_urls:
            parsed = urlsplit(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise SettingsError(
                    f"remote_url {url!r} is not an http(s) URL (example: https://search.example.com:9200)"
                )
            if parsed.password:
                raise SettingsError(
                    "remote_url must not contain a password: give the user with --user and store the "
                    "password in the keyring with `visualfinder sync --ask-password`"
                )
        if self.remote_url and not self.remote_index.strip():
            raise SettingsError("remote_index must not be empty")
        name = self.remote_index
        if (
            name != name.lower()
            or name.startswith(("_", "-", "+"))
            or any(c in name for c in ' "*\\<|,>/?#:')
        ):
            raise SettingsError(
                f"remote_index {self.remote_index!r} is not a valid OpenSearch index name (lower case, not starting "
                'with _ - +, no spaces or any of \\/*?"<>|,#:)'
            )
        for setting in ("remote_timeout_s", "remote_backoff_s", "remote_backoff_max_s", "remote_bulk_max_bytes",
                        "remote_bulk_max_docs"):  # fmt: skip
            if getattr(self, setting) <= 0:
                raise SettingsError(f"{setting} must be positive")
        if self.remote_max_retries < 0 or self.remote_push_delay_s < 0:
            raise SettingsError("remote_max_retries and remote_push_delay_s must not be negative")

    @property
    def remote_urls(self) -> list[str]:
        """The cluster's node URLs from `remote_url` (comma-separated), trailing slashes removed."""
        return [u.strip().rstrip("/") for u in self.remote_url.split(",") if u.strip()]

    @property
    def sync_configured(self) -> bool:
        return bool(self.remote_urls)

    @property
    def api_cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.api_cors_origins.split(",") if o.strip()]

    def save(self) -> Path:
        """Write every setting except the data dir (which locates the file) to settings.toml."""
        self.validate()
        data = {k: v for k, v in self.as_dict().items() if k != "data_dir"}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.settings_path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
        os.replace(tmp, self.settings_path)
        return self.settings_path

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v) for f in fields(self)}

    def replace(self, **changes: Any) -> Settings:
        updated = dataclasses.replace(self, **_coerce(changes))
        updated.validate()
        return updated


def update_settings_file(data_dir: str | os.PathLike, **changes: Any) -> Path:
    """Change some settings in the data dir's settings.toml, leaving the others as the file has them.

    Unlike `Settings.save`, values that came from env vars or CLI flags are not written.
    """
    path = Path(data_dir) / SETTINGS_FILE
    current = _read_settings_file(path) if path.is_file() else {}
    current.update(_coerce(changes))
    Settings(**_coerce({**current, "data_dir": data_dir})).validate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(current), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _read_settings_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    known = {f.name for f in fields(Settings)} - {"data_dir"}
    unknown = sorted(set(raw) - known)
    if unknown:
        log.warning("ignoring unknown settings in %s: %s", path, ", ".join(unknown))
    return {k: v for k, v in raw.items() if k in known}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Convert strings (from env vars or files) to each field's declared type."""
    types = {f.name: f.type for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in types:
            raise SettingsError(f"unknown setting {key!r}")
        kind = types[key]
        try:
            if key == "data_dir":
                out[key] = Path(value).expanduser()
            elif kind == "int":
                out[key] = int(value)
            elif kind == "float":
                out[key] = float(value)
            elif kind == "bool":
                out[key] = (
                    value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                )
            else:
                out[key] = str(value)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"setting {key} has an invalid value {value!r}") from exc
    return out
