"""Getting a model ready in the app: check (and on first use download) its weights on a worker,
with byte progress for a progress bar, and an offline message that says what to do in the app.

Used by the settings dialog and the first-run dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QWidget

from visualfinder.config import Settings
from visualfinder.errors import ModelUnavailableError
from visualfinder.gui.workers import Job, JobContext
from visualfinder.jobs import Progress
from visualfinder.models.embedder import NO_WEIGHTS, Embedder, weights_are_file
from visualfinder.models.weights import cached_weights, weights_source

DOWNLOAD_PHASE = "downloading model"


def model_job(chosen: Settings, name: str = "Checking the model", key: str = "settings-model",
              prepare: bool = False) -> Job:  # fmt: skip
    """A job that loads `chosen`'s model, downloading its weights with progress if needed; it
    returns 'key on device with backend'. The loaded model is kept, so the library opens on it at once.
    `prepare`: also export it and choose its backend on this machine (Embedder.prepare), as the
    first run does, so that later starts need no torch on a CPU."""

    def run(ctx: JobContext) -> str:
        def downloaded(done: int, total: int | None) -> None:
            ctx.progress(Progress(DOWNLOAD_PHASE, done, total or 0))

        # As the library will build it: device, batch size, backend (an ONNX export), threads.
        embedder = Embedder.for_settings(chosen, chosen.model, chosen.pretrained)
        try:
            if prepare:
                embedder.prepare(ctx.progress)
            else:
                embedder.load(progress=downloaded)
        except ModelUnavailableError as exc:
            if _offline(exc):
                raise ModelUnavailableError(offline_message(chosen.model, chosen.pretrained, exc)) from exc
            raise
        return f"{embedder.key} on {embedder.device} with {embedder.backend}"

    return Job(name, run, key=key)


def progress_widgets(parent: QWidget) -> tuple[QProgressBar, QLabel]:
    """The download progress bar and the (selectable) message line of a model dialog, hidden."""
    bar = QProgressBar(parent)
    bar.setTextVisible(True)
    bar.setVisible(False)
    message = QLabel(parent)
    message.setWordWrap(True)
    message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    message.setVisible(False)
    return bar, message


def show_progress(bar: QProgressBar, progress: Progress) -> None:
    """Bytes downloaded so far on `bar` (busy indicator while the size is unknown)."""
    if progress.phase != DOWNLOAD_PHASE:  # preparing the model: export, backend timing
        bar.setRange(0, progress.total)
        bar.setValue(progress.done)
        bar.setFormat(
            f"Preparing the model: {progress.message}" if progress.message else "Preparing the model"
        )
        return
    if progress.total:
        bar.setRange(0, 1000)
        bar.setValue(round(1000 * progress.done / progress.total))
        bar.setFormat(
            f"Downloading the weights: {progress.done / 1e6:,.0f} of {progress.total / 1e6:,.0f} MB"
        )
    else:
        bar.setRange(0, 0)


def weights_missing(model: str, pretrained: str, cache_dir: str | None = None) -> str | None:
    """Where `pretrained` (a tag) would be downloaded from, if its weights are not on this
    computer yet; None when nothing needs a download (cached, a file, or no weights).

    The cache lookup is the embedder's own (`models.weights.cached_weights`); imports
    open_clip, so call it on a worker."""
    if pretrained.lower() in NO_WEIGHTS or weights_are_file(pretrained):
        return None
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        return None  # an unknown tag: loading says so with the known ones
    if cached_weights(cfg, cache_dir) is not None:
        return None
    return weights_source(cfg) or None


def offline_message(model: str, pretrained: str, exc: BaseException | None = None) -> str:
    where = _source(model, pretrained)
    return (
        f"You appear to be offline: the weights of {model} ({pretrained}) cannot be downloaded"
        f"{f' from {where}' if where else ''}. Connect to the internet and try again (they are downloaded "
        "only once), or download the weights file (open_clip_pytorch_model.bin) on another computer, "
        "copy it here and choose it with \u201cUse a weights file\u201d."
    )


def _source(model: str, pretrained: str) -> str:
    try:
        return weights_missing(model, pretrained) or ""
    except Exception:  # only for the message: never hide the real error behind this one
        return ""


def _offline(exc: BaseException) -> bool:
    """The download failed for want of a network (not a bad tag, a full disk, a 404)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionError) or "offline" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
