"""Duplicates: a library's duplicate groups (three tiers) and the decisions users keep about them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from visualfinder.catalog.duplicates import Decision, forget_decisions, list_decisions, record_decision
from visualfinder.catalog.filters import Filters
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import QueryError, StorageError
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.library.duplicates_worker import DuplicatesWorker, WorkerLost
from visualfinder.library.indexing import Indexer
from visualfinder.library.live_index import LiveIndex
from visualfinder.paths import normalise
from visualfinder.products.export import write_duplicates_csv
from visualfinder.search.duplicates import DuplicateFinder, DuplicateGroup, DuplicateReport, GroupsCallback

log = logging.getLogger(__name__)

ImageRef = int | str | os.PathLike
# Moves one file to the system trash (never deletes it); False or OSError when it could not.
MoveToTrash = Callable[[str], bool]


@dataclass
class TrashReport:
    """What `Duplicates.keep_one` did: the file kept, the files now in the trash, and those left."""

    kept: str
    moved: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why it is still there)
    removed_from_catalog: int = 0


class Duplicates:
    """Finds duplicate groups over the live index and remembers "not duplicates" decisions."""

    def __init__(self, settings: Settings, catalog: Catalog, live: LiveIndex, events: EventHub,
                 indexer: Indexer | None = None, worker: DuplicatesWorker | None = None):  # fmt: skip
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self.events = events
        self.indexer = indexer
        self.worker = worker

    def find(
        self,
        threshold: float | None = None,
        *,
        filters: Filters | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        on_groups: GroupsCallback | None = None,
        in_worker: bool = False,
    ) -> DuplicateReport:
        """Duplicate groups in three tiers (identical, same picture, similar), best file first;
        pairs with a remembered decision are left out. `on_groups` receives the groups as they
        are found (identical files first, at once), before the report holds them all.

        `in_worker`: run this same search in the library's worker process (duplicates_worker.py),
        so that it never holds this process's GIL (the app's windows stay responsive); here
        when there is no worker or it cannot run."""
        if in_worker and self.worker is not None:
            try:
                return self.worker.find(threshold, filters, progress, cancel, on_groups)
            except WorkerLost as exc:
                log.warning("duplicates worker process unavailable (%s); searching in this process", exc)
        self.live.follow_catalog()
        self.live.catch_up()
        engine = self.live.engine
        s = self.settings
        finder = DuplicateFinder(
            self.catalog, engine.index, engine.model.key,
            threshold=s.duplicate_threshold if threshold is None else threshold,
            candidate_similarity=s.duplicate_candidate_similarity, max_pixels=s.max_image_pixels,
        )  # fmt: skip
        return finder.run(filters, progress, cancel, on_groups)

    def mark_not_duplicates(self, refs: Sequence[ImageRef], decision: str = "distinct") -> int:
        """Remember that these images are not duplicates (`distinct`) or are kept on purpose
        (`keep_both`): no pair among them is grouped again. Returns the number of pairs."""
        count = record_decision(self.catalog, self._ids(refs), decision)
        self._changed()
        return count

    def forget_decisions(self, refs: Sequence[ImageRef] | None = None) -> int:
        """Forget the decisions among these images (every decision when `refs` is None)."""
        count = forget_decisions(self.catalog, None if refs is None else self._ids(refs))
        self._changed()
        return count

    def keep_one(
        self,
        keep: ImageRef,
        others: Sequence[ImageRef],
        move_to_trash: MoveToTrash,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> TrashReport:
        """Keep `keep` and move `others` to the system trash with `move_to_trash` (never a
        permanent delete); the catalog then forgets the moved files. Nothing is moved unless the
        kept file is still on disk, so a group never loses its last copy."""
        kept = self.catalog.records([self.catalog.image_id(keep)])
        kept_path = next(iter(kept.values())).path
        if not os.path.isfile(kept_path):
            raise QueryError(f"the copy to keep is gone from the disk ({kept_path}); nothing was moved")
        paths = []
        for ref in others:
            image_id = self.catalog.image_id(ref)
            path = self.catalog.records([image_id])[image_id].path
            if normalise(path) == normalise(kept_path):
                raise QueryError("the copy to keep cannot also go to the trash")
            paths.append(path)
        report = TrashReport(kept_path)
        for done, path in enumerate(paths):
            if cancel is not None:
                cancel.raise_if_cancelled()
            progress(Progress("moving to the trash", done, len(paths)))
            try:
                moved = move_to_trash(path)
                reason = "the system trash refused it"
            except OSError as exc:
                moved, reason = False, exc.strerror or str(exc)
            if moved:
                report.moved.append(path)
            elif not os.path.exists(path):
                report.moved.append(path)  # gone already: the catalog follows all the same
            else:
                log.warning("could not move %s to the trash: %s", path, reason)
                report.failed.append((path, reason))
        progress(Progress("moving to the trash", len(paths), len(paths)))
        if report.moved and self.indexer is not None:
            result = self.indexer.run_paths(
                [normalise(p) for p in report.moved], source="duplicates", hold_removals=False, wait=30.0
            )
            report.removed_from_catalog = result.removed
        return report

    def close(self) -> None:
        """Stop the worker process, if one was started."""
        if self.worker is not None:
            self.worker.close()

    def decisions(self) -> list[Decision]:
        return list_decisions(self.catalog)

    def export_csv(
        self, groups: Sequence[DuplicateGroup], dest: str | os.PathLike, excel: bool = False
    ) -> Path:
        try:
            return write_duplicates_csv(groups, dest, excel=excel)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc

    def _ids(self, refs: Sequence[ImageRef]) -> list[int]:
        return [self.catalog.image_id(r) for r in refs]

    def _changed(self) -> None:
        self.events.emit(LibraryChanged(None, "duplicates"))
