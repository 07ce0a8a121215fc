"""Pretrained weights: download once (with byte progress) into the Hugging Face cache, or fail
fast offline with a message that says how to get them."""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from collections.abc import Callable

from visualfinder.errors import ModelUnavailableError

log = logging.getLogger(__name__)

DownloadProgress = Callable[[int, int | None], None]  # (bytes done, bytes total or None)


HUB_DEFAULT_FILE = "open_clip_pytorch_model.bin"


def weights_source(cfg: dict) -> str:
    """Where a pretrained tag's weights are downloaded from (its open_clip pretrained cfg)."""
    hub = cfg.get("hf_hub", "")
    return f"https://huggingface.co/{os.path.split(hub)[0]}" if hub else cfg.get("url", "")


def cached_weights(cfg: dict, cache_dir: str | None) -> str | None:
    """The local path of a tag's weights when they are on this computer already, else None:
    the Hugging Face cache for hub weights, open_clip's own cache (~/.cache/clip) for URL weights.
    The one cache lookup, used by `fetch_pretrained` and by the app before it offers a download."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        cached = try_to_load_from_cache(repo_id, filename or HUB_DEFAULT_FILE, cache_dir=cache_dir)
        return cached if isinstance(cached, str) and os.path.isfile(cached) else None
    url = cfg.get("url", "")
    if url:
        folder = cache_dir or os.path.expanduser("~/.cache/clip")
        path = os.path.join(folder, os.path.basename(url))
        return path if os.path.isfile(path) else None
    return None


def fetch_pretrained(
    model: str, tag: str, cfg: dict, cache_dir: str | None, progress: DownloadProgress | None
) -> str:
    """Return a local path to the tag's weights, downloading them (with progress) if needed."""
    hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    where = weights_source(cfg)
    try:
        cached = cached_weights(cfg, cache_dir)
        if cached is not None:  # also offline: no reachability check for what is here already
            return cached
        if hub:
            from huggingface_hub import hf_hub_download

            repo_id, filename = os.path.split(hub)
            filename = filename or HUB_DEFAULT_FILE
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
