"""Duplicates: a library's duplicate groups (three tiers) and the decisions users keep about them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from visualfinder.catalog.duplicates import Decision, forget_decisions, list_decisions, record_decision
from visualfinder.catalog.filters import Filters
from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import StorageError
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.jobs import CancelToken, ProgressCallback, no_progress
from visualfinder.library.live_index import LiveIndex
from visualfinder.products.export import write_duplicates_csv
from visualfinder.search.duplicates import DuplicateFinder, DuplicateGroup, DuplicateReport

ImageRef = int | str | os.PathLike


class Duplicates:
    """Finds duplicate groups over the live index and remembers "not duplicates" decisions."""

    def __init__(self, settings: Settings, catalog: Catalog, live: LiveIndex, events: EventHub):
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self.events = events

    def find(
        self,
        threshold: float | None = None,
        *,
        filters: Filters | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> DuplicateReport:
        """Duplicate groups in three tiers (identical, same picture, similar), best file first;
        pairs with a remembered decision are left out."""
        self.live.follow_catalog()
        self.live.catch_up()
        engine = self.live.engine
        s = self.settings
        finder = DuplicateFinder(
            self.catalog, engine.index, engine.model.key,
            threshold=s.duplicate_threshold if threshold is None else threshold,
            candidate_similarity=s.duplicate_candidate_similarity, max_pixels=s.max_image_pixels,
        )  # fmt: skip
        return finder.run(filters, progress, cancel)

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
