"""Switching a library to another embedding model while the old one keeps answering searches.

The design, in the order things happen:

1. **Record the intent.** `meta` gets `switch_name/switch_pretrained/switch_key` (the target
   model). From then on the switch is *pending*: a crash, Ctrl+C or closing the app leaves it
   pending, and running the switch again resumes it.
2. **Fill the new generation of vectors, without locks.** Embeddings are stored per model key
   (`embeddings(image_id, model_key, vector)`), so the target model's vectors are written
   beside the active model's. The active model, its index file and its planner are untouched:
   searches and indexing go on as before. Work is found by query, not remembered: every 'ok'
   image without a target-key vector. Identical files get a copy of their twin's vector; the
   rest are re-read from disk, checked against their stored content hash, decoded and embedded
   in batches (one transaction per batch), so resuming never redoes a committed batch. A vector
   is stored only if the row still has the content it was computed from (indexing may change a
   file meanwhile). Files that cannot be read are skipped and reported.
3. **Swap, atomically, under the writer lock.** Images indexed during step 2 got only the old
   model's vector; they are embedded now (normally a handful). Then a complete index for the
   target model is built in memory from its stored vectors, the `meta` rows naming the active
   model are replaced and the pending ones deleted in one transaction (which also bumps the
   catalog generation), the index is saved, and the in-process engine (model + index +
   planner) is replaced as one object. Another process notices the new active model on its
   next search (`Library._follow_catalog`) and loads the saved index (or rebuilds it).
4. **Afterwards** the previous model's vectors stay stored, so switching back costs only the
   images added since; `Library.forget_model` drops them to reclaim space.

Images that could not be re-embedded have no vector for the new model after the swap: the
next `visualfinder index` embeds them (or removes them if their file is gone).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from visualfinder.catalog.store import ModelRef
from visualfinder.errors import Cancelled, ImageDecodeError
from visualfinder.ingest.imaging import content_hash, decode_image, library_decode_side, read_image_file
from visualfinder.ingest.pipeline import FileError, default_decode_workers
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.models.embedder import Embedder

if TYPE_CHECKING:
    from visualfinder.library.facade import Library

log = logging.getLogger(__name__)

PHASE = "switching model"


@dataclass(frozen=True)
class SwitchState:
    """A pending switch: the target model and how far its vectors have come."""

    target: ModelRef
    embedded: int
    total: int
    started_at: float | None

    def to_json(self) -> dict:
        return {"model": self.target.name, "pretrained": self.target.pretrained, "model_key": self.target.key,
                "embedded": self.embedded, "total": self.total, "started_at": self.started_at}  # fmt: skip


@dataclass
class SwitchReport:
    """What a switch run did; `swapped` is True when the library now uses the target model."""

    target: ModelRef
    embedded: int = 0
    copied: int = 0
    already: int = 0
    skipped: list[FileError] = field(default_factory=list)
    swapped: bool = False
    cancelled: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{self.embedded} embedded", f"{self.copied} copied from identical files",
                 f"{self.already} already done", f"{len(self.skipped)} skipped"]  # fmt: skip
        return ", ".join(parts)


@dataclass
class _Item:
    id: int
    path: str
    digest: str | None
    tensor: object = None
    error: str | None = None


def run_switch(
    library: Library,
    target: ModelRef,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> SwitchReport:
    """Re-embed the library with `target` and make it the active model (see the module doc)."""
    started = time.perf_counter()
    catalog = library.catalog
    report = SwitchReport(target)
    if target.key == library.model_key:
        catalog.set_pending_switch(None)
        report.swapped = True
        return report
    s = library.settings
    embedder = Embedder.for_settings(s, target.name, target.pretrained)
    progress(Progress("loading model", 0, 0, target.key))
    embedder.load()  # unknown or unavailable weights fail here, before anything is recorded
    pending = catalog.pending_switch()
    if pending is None or pending.key != target.key:
        catalog.set_pending_switch(target)
    report.already = catalog.count_embedded(target.key)
    try:
        skip: set[int] = set()
        _fill(library, embedder, report, skip, progress, cancel)
        with library._writing(wait=60.0):
            _fill(library, embedder, report, skip, progress, None)  # images indexed meanwhile
            library._install_switched_model(target, embedder, progress)
        report.swapped = True
    except Cancelled:
        report.cancelled = True
    report.seconds = time.perf_counter() - started
    log.info("model switch to %s: %s%s", target.key, report.summary(),
             "" if report.swapped else " (pending: run it again to resume)")  # fmt: skip
    return report


def switch_state(library: Library) -> SwitchState | None:
    target = library.catalog.pending_switch()
    if target is None:
        return None
    catalog = library.catalog
    started = catalog.meta("switch_started_at")
    return SwitchState(
        target,
        catalog.count_embedded(target.key),
        catalog.stats(target.key).ok,
        float(started) if started else None,
    )


def _fill(
    library: Library,
    embedder: Embedder,
    report: SwitchReport,
    skip: set[int],
    progress: ProgressCallback,
    cancel: CancelToken | None,
) -> None:
    """Give every 'ok' image a vector from `embedder` (except the `skip` ones)."""
    catalog = library.catalog
    key = embedder.key
    report.copied += catalog.copy_embeddings_from_twins(key)
    total = catalog.stats(key).ok
    done = catalog.count_embedded(key)
    progress(Progress(PHASE, done, total))
    workers = library.settings.decode_workers or default_decode_workers(embedder.device)
    with ThreadPoolExecutor(workers, thread_name_prefix="vf-switch") as pool:
        batch: list[_Item] = []
        for item in _prepared(pool, _missing(catalog, key, skip), library, embedder, cancel):
            if item.error:
                skip.add(item.id)
                report.skipped.append(FileError(item.path, item.error))
                continue
            batch.append(item)
            if len(batch) >= embedder.batch_size:
                done += _embed(catalog, embedder, batch, report)
                progress(Progress(PHASE, done, total, item.path))
                batch = []
        if batch:
            done += _embed(catalog, embedder, batch, report)
    copied = catalog.copy_embeddings_from_twins(key)  # the copies whose twin was embedded above
    report.copied += copied
    progress(Progress(PHASE, done + copied, total))


def _missing(catalog, key: str, skip: set[int]) -> Iterator[tuple[int, str, str | None]]:
    """Rows still needing a vector, one per content (identical files get a copy afterwards)."""
    after = 0
    seen: set[str] = set()
    while rows := catalog.images_missing_embedding(key, after_id=after, limit=512):
        for row in rows:
            if row[0] in skip or row[2] in seen:
                continue
            if row[2] is not None:
                seen.add(row[2])
            yield row
        after = rows[-1][0]


def _prepared(
    pool: ThreadPoolExecutor, rows, library: Library, embedder: Embedder, cancel
) -> Iterator[_Item]:
    """Read, check and preprocess files on the pool, a bounded distance ahead of the model."""
    ahead = 2 * embedder.batch_size
    queue: deque[Future] = deque()
    rows = iter(rows)
    exhausted = False
    max_pixels = library.settings.max_image_pixels
    decode_side = library_decode_side(embedder.image_size, library.settings.thumbnail_size)
    while True:
        while not exhausted and len(queue) < ahead:
            row = next(rows, None)
            if row is None:
                exhausted = True
                break
            queue.append(pool.submit(_prepare, _Item(*row), embedder, max_pixels, decode_side))
        if not queue:
            return
        if cancel is not None and cancel.cancelled:
            for future in queue:
                future.cancel()
            raise Cancelled("model switch cancelled")
        yield queue.popleft().result()


def _prepare(item: _Item, embedder: Embedder, max_pixels: int, decode_side: int) -> _Item:
    try:
        data = read_image_file(item.path)
        if item.digest is not None and content_hash(data) != item.digest:
            item.error = "changed since it was indexed (run `visualfinder index`)"
            return item
        decoded = decode_image(data, min_side=decode_side, max_pixels=max_pixels, path=item.path)
        item.tensor = embedder.preprocess(decoded.image)
    except ImageDecodeError as exc:
        item.error = exc.reason
    return item


def _embed(catalog, embedder: Embedder, batch: list[_Item], report: SwitchReport) -> int:
    vectors = embedder.embed_batch([item.tensor for item in batch])
    stored = catalog.put_embeddings(
        embedder.key, [(item.id, item.digest, vector) for item, vector in zip(batch, vectors, strict=True)]
    )
    # A row indexing changed meanwhile is not stored; the pass under the writer lock redoes it.
    report.embedded += stored
    return stored
