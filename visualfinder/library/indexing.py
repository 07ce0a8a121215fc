"""Indexer: a library's folders brought up to date through the one indexing pipeline.

Two ways in, one way out: `run` (whole folders: `visualfinder index`, the app's refresh) and
`run_paths` (just the paths that changed: the folder watcher) each make a scan plan, run it
through the pipeline under the writer locks, and end in `_finish` (save the index, apply
metadata sidecars, tell listeners).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from visualfinder.catalog.records import Folder
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import Cancelled
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.ingest.pipeline import IndexingPipeline, IndexReport
from visualfinder.ingest.scanner import FileStat, ScanPlan, scan, scan_paths
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.library.live_index import LiveIndex
from visualfinder.models.embedder import Embedder
from visualfinder.products.importer import apply_sidecars

log = logging.getLogger(__name__)

THUMBS_DIR = "thumbs"


class Indexer:
    """Runs scan plans of one library through its pipeline, with the index kept current."""

    def __init__(self, settings: Settings, catalog: Catalog, live: LiveIndex, events: EventHub):
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self.events = events
        self.thumbs_dir = settings.data_dir / THUMBS_DIR

    def pipeline(self, embedder: Embedder | None = None) -> IndexingPipeline:
        """The pipeline for the active model (or for `embedder`, re-embedding for a model switch)."""
        s = self.settings
        engine = self.live.engine
        return IndexingPipeline(
            self.catalog, embedder or engine.embedder, engine.index, self.thumbs_dir,
            thumbnail_size=s.thumbnail_size, max_pixels=s.max_image_pixels, decode_workers=s.decode_workers,
            file_time_limit=s.file_time_limit_s or None, on_commit=self.live.after_commit,
            decode_backend=s.decode_backend,
        )  # fmt: skip

    def run(
        self,
        roots: list[Folder],
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        source: str = "index",
        retry_skipped: bool = False,
    ) -> IndexReport:
        """Bring these catalog folders up to date (new, changed, moved and removed files);
        `retry_skipped` tries every skipped file again, whatever its kind."""
        with self.live.writing():
            progress(Progress("scanning", 0, 0))
            started = time.perf_counter()
            plan = scan(self.catalog, roots, self.live.engine.model.key, cancel,
                        on_file=lambda n: progress(Progress("scanning", n, 0)), retry_skipped=retry_skipped)  # fmt: skip
            log.info("scan: %d new, %d changed, %d missing, %d unchanged in %.2fs", len(plan.new),
                     len(plan.changed), len(plan.missing), plan.unchanged, time.perf_counter() - started)  # fmt: skip
            report = self.pipeline().run(plan, progress, cancel)
            self._finish(plan, report, progress, save=True)
        self._announce(report, source)
        return report

    def run_paths(
        self,
        paths: Sequence[str],
        *,
        accept: Callable[[FileStat], bool] | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        source: str = "watcher",
        save_index: bool = True,
        wait: float = 0.0,
        hold_removals: bool = True,
    ) -> IndexReport:
        """Bring just these (normalised) paths up to date; see `Library.index_paths`."""
        report = IndexReport()
        with self.live.writing(wait=wait):
            try:
                plan = scan_paths(self.catalog, list(paths), self.live.engine.model.key, accept, cancel,
                                  on_file=lambda n: progress(Progress("scanning", n, 0)))  # fmt: skip
            except Cancelled:
                report.cancelled = True
                return report
            held: list[str] = []
            if plan.deferred and plan.missing and hold_removals:
                held, plan.missing = [r.path for r in plan.missing], []
            if plan.work or plan.missing:
                report = self.pipeline().run(plan, progress, cancel)
            else:
                report = IndexReport(unchanged=plan.unchanged, folder_errors=list(plan.folder_errors))
            report.deferred = plan.deferred + held
            # No "saving index" step here: a watcher's batch ends at its last file (the app's bar too).
            self._finish(plan, report, no_progress, save=save_index)
        self._announce(report, source)
        return report

    def _finish(self, plan: ScanPlan, report: IndexReport, progress: ProgressCallback, save: bool) -> None:
        """The end of every run, under the writer locks: save the index if it changed, then apply
        the metadata sidecars the scan saw (new or changed ones, or ones naming new images)."""
        if save and (report.changed or self.live.has_unsaved_changes):
            progress(Progress("saving index", 0, 0))
            self.live.save()
        if plan.sidecars and not report.cancelled:
            new_paths = {f.path for f in plan.new} | {f.path for f, _ in plan.changed}
            result = apply_sidecars(self.catalog, plan.sidecars, new_paths)
            report.metadata_updated += result.images_updated
            report.folder_errors += result.problems

    def _announce(self, report: IndexReport, source: str) -> None:
        # Folder problems too: a watcher batch whose files all wait for a stable size must
        # still say that a folder could not be read.
        if report.changed or report.metadata_updated or report.folder_errors:
            self.events.emit(LibraryChanged(report, source))
        if report.metadata_updated:
            self.events.emit(LibraryChanged(None, "metadata"))
