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
   rest go through the indexing pipeline's `reembed` (the same decode pool, per-file time limit
   and cancellation as indexing): re-read, checked against their stored content hash, decoded
   and embedded in batches (one transaction per batch), so resuming never redoes a committed batch. A vector
   is stored only if the row still has the content it was computed from (indexing may change a
   file meanwhile). Files that cannot be read are skipped and reported.
3. **Swap, atomically, under the writer lock.** Images indexed during step 2 got only the old
   model's vector; they are embedded now (normally a handful). Then a complete index for the
   target model is built in memory from its stored vectors, the `meta` rows naming the active
   model are replaced and the pending ones deleted in one transaction (which also bumps the
   catalog generation), the index is saved, and the in-process engine (model + index +
   planner) is replaced as one object. Another process notices the new active model on its
   next search (`LiveIndex.follow_catalog`) and loads the saved index (or rebuilds it).
4. **Afterwards** the previous model's vectors stay stored, so switching back costs only the
   images added since; `Models.forget` drops them to reclaim space.

Images that could not be re-embedded have no vector for the new model after the swap: the
next `visualfinder index` embeds them (or removes them if their file is gone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from visualfinder.catalog.records import ModelRef
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import Cancelled
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.library.live_index import LiveIndex
from visualfinder.models.embedder import Embedder, precision_of_key

if TYPE_CHECKING:  # `status` reads the switch state without loading the indexing pipeline
    from visualfinder.ingest.pipeline import FileError, IndexingPipeline
    from visualfinder.library.indexing import Indexer

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


def switch_state(catalog: Catalog) -> SwitchState | None:
    """The switch that was started and has not completed, with its progress."""
    target = catalog.pending_switch()
    if target is None:
        return None
    started = catalog.meta("switch_started_at")
    return SwitchState(
        target,
        catalog.count_embedded(target.key),
        catalog.stats(target.key).ok,
        float(started) if started else None,
    )


class ModelSwitch:
    """One run of a switch to `target` (see the module doc); `run` may be called again to resume."""

    def __init__(
        self, settings: Settings, catalog: Catalog, live: LiveIndex, indexer: Indexer, events: EventHub
    ):
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self.indexer = indexer
        self.events = events

    def run(
        self, target: ModelRef, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> SwitchReport:
        started = time.perf_counter()
        catalog = self.catalog
        report = SwitchReport(target)
        if target.key == self.live.engine.model.key:
            catalog.set_pending_switch(None)
            report.swapped = True
            return report
        embedder = Embedder.for_settings(
            self.settings, target.name, target.pretrained, precision_of_key(target.key)
        )
        progress(Progress("loading model", 0, 0, target.key))
        embedder.load()  # unknown or unavailable weights fail here, before anything is recorded
        pending = catalog.pending_switch()
        if pending is None or pending.key != target.key:
            catalog.set_pending_switch(target)
        report.already = catalog.count_embedded(target.key)
        pipeline = self.indexer.pipeline(embedder)
        try:
            skip: set[int] = set()
            self._fill(pipeline, report, skip, progress, cancel)
            with self.live.writing(wait=60.0):
                self._fill(pipeline, report, skip, progress, None)  # images indexed meanwhile
                self._install(target, embedder, progress)
            report.swapped = True
        except Cancelled:
            report.cancelled = True
        report.seconds = time.perf_counter() - started
        log.info("model switch to %s: %s%s", target.key, report.summary(),
                 "" if report.swapped else " (pending: run it again to resume)")  # fmt: skip
        return report

    def _fill(
        self,
        pipeline: IndexingPipeline,
        report: SwitchReport,
        skip: set[int],
        progress: ProgressCallback,
        cancel: CancelToken | None,
    ) -> None:
        """Give every 'ok' image a vector of the pipeline's model (except the `skip` ones)."""
        catalog = self.catalog
        key = pipeline.embedder.key
        report.copied += catalog.copy_embeddings_from_twins(key)
        total = catalog.stats(key).ok
        done = catalog.count_embedded(key)
        progress(Progress(PHASE, done, total))
        for vectors, skipped in pipeline.reembed(_missing(catalog, key, skip), cancel):
            for image_id, error in skipped:
                skip.add(image_id)
                report.skipped.append(error)
            if vectors:
                # A row that indexing changed meanwhile is not stored; the pass under the writer lock redoes it.
                stored = catalog.put_embeddings(key, vectors)
                report.embedded += stored
                done += stored
                progress(Progress(PHASE, done, total))
        copied = catalog.copy_embeddings_from_twins(key)  # the copies whose twin was embedded above
        report.copied += copied
        progress(Progress(PHASE, done + copied, total))

    def _install(self, model: ModelRef, embedder: Embedder, progress: ProgressCallback) -> None:
        """Under the writer lock: build `model`'s index from its stored vectors and make it active."""
        engine = self.live.new_engine(model, self.live.engine.metric, embedder)
        self.live.fill(engine, progress, generation=0)
        engine.index.generation = self.catalog.set_active_model(model, finish_switch=True)
        self.live.install(engine, saved=False)
        progress(Progress("saving index", 0, 0))
        self.live.save()
        self.events.emit(LibraryChanged(None, "model"))


def _missing(catalog: Catalog, key: str, skip: set[int]) -> Iterator[tuple[int, str, str | None]]:
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
