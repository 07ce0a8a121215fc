"""The Library's product-catalog features: product metadata, duplicates and the query bar.

A part of `service.Library` (it inherits this class), kept in its own file so the facade
stays readable: every method here works through the same catalog, events and search as the
rest of Library.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from visualfinder.catalog.store import ImageRecord
from visualfinder.errors import QueryError
from visualfinder.events import LibraryChanged
from visualfinder.jobs import CancelToken, ProgressCallback, no_progress
from visualfinder.products.export import write_duplicates_csv
from visualfinder.products.fields import extra_fields, parse_price, remember_extra_fields, write_fields
from visualfinder.products.importer import (
    ImportReport,
    SidecarReport,
    apply_sidecars,
    find_sidecars,
    import_file,
)
from visualfinder.search.duplicates import (
    Decision,
    DuplicateFinder,
    DuplicateGroup,
    DuplicateReport,
    forget_decisions,
    list_decisions,
    record_decision,
)
from visualfinder.search.planner import META_FIELDS, Filters
from visualfinder.search.query_bar import ParsedQuery, parse_query

if TYPE_CHECKING:
    from visualfinder.library.facade import QueryTerm, SearchResponse


class CatalogFeatures:
    """Mixed into service.Library; relies on its catalog, settings, events, index and search."""

    # --- product metadata ----------------------------------------------------------------

    def import_metadata(
        self,
        path: str | os.PathLike,
        *,
        base_dir: str | os.PathLike | None = None,
        replace_tags: bool = False,
        dry_run: bool = False,
    ) -> ImportReport:
        """Import product metadata (CSV, JSON, JSON Lines); the report lists what did not match."""
        report = import_file(
            self.catalog, path, base_dir=os.fspath(base_dir) if base_dir else None,
            replace_tags=replace_tags, dry_run=dry_run,
        )  # fmt: skip
        if report.images_updated and not dry_run:
            self.events.emit(LibraryChanged(None, "metadata"))
        return report

    def apply_sidecars(self, folders: Sequence[str | os.PathLike] | None = None) -> SidecarReport:
        """Apply new or changed metadata sidecars (photo.jpg.json, products.csv) below `folders`
        (default: every catalog folder). Indexing does this by itself; the watcher calls it."""
        roots = (
            [os.path.abspath(os.fspath(f)) for f in folders] if folders else [f.path for f in self.folders()]
        )
        result = apply_sidecars(self.catalog, find_sidecars(roots))
        if result.images_updated:
            self.events.emit(LibraryChanged(None, "metadata"))
        return result

    def record(self, ref: int | str | os.PathLike) -> ImageRecord:
        """An image with its product metadata and tags."""
        image_id = self.image_id(ref)
        return self.catalog.records([image_id])[image_id]

    def update_metadata(
        self, ref: int | str | os.PathLike, *, extra: dict[str, object] | None = None, **fields: object
    ) -> ImageRecord:
        """Set product fields (sku, title, description, url, price; None clears) and extra values."""
        unknown = set(fields) - set(META_FIELDS)
        if unknown:
            raise QueryError(
                f"unknown metadata field(s) {', '.join(sorted(unknown))}; use {', '.join(META_FIELDS)}"
            )
        if fields.get("price") not in (None, ""):
            try:
                fields["price"] = parse_price(fields["price"])
            except ValueError:
                raise QueryError(f"price {fields['price']!r} is not a number") from None
        image_id = self.image_id(ref)
        with self.catalog.transaction() as conn:
            write_fields(
                conn, image_id, {k: (v if v != "" else None) for k, v in fields.items()}, extra or {}
            )
            if extra:
                remember_extra_fields(conn, extra)
            self.catalog.enqueue_upserts(conn, [image_id])
        self.events.emit(LibraryChanged(None, "metadata"))
        return self.record(image_id)

    def metadata_fields(self) -> list[str]:
        """Fields the query bar and `--where` accept: the product fields and imported extras."""
        return [*META_FIELDS, *sorted(extra_fields(self.catalog))]

    # --- duplicates ----------------------------------------------------------------------

    def find_duplicates(
        self,
        threshold: float | None = None,
        *,
        filters: Filters | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> DuplicateReport:
        """Duplicate groups in three tiers (identical, same picture, similar), best file first;
        pairs with a remembered decision are left out."""
        self._follow_catalog()
        self._catch_up_with_other_processes()
        s = self.settings
        finder = DuplicateFinder(
            self.catalog, self.vector_index, self.model_key,
            threshold=s.duplicate_threshold if threshold is None else threshold,
            candidate_similarity=s.duplicate_candidate_similarity, max_pixels=s.max_image_pixels,
        )  # fmt: skip
        return finder.run(filters, progress, cancel)

    def mark_not_duplicates(self, refs: Sequence[int | str | os.PathLike], decision: str = "distinct") -> int:
        """Remember that these images are not duplicates (`distinct`) or are kept on purpose
        (`keep_both`): no pair among them is grouped again. Returns the number of pairs."""
        count = record_decision(self.catalog, [self.image_id(r) for r in refs], decision)
        self.events.emit(LibraryChanged(None, "duplicates"))
        return count

    def forget_duplicate_decisions(self, refs: Sequence[int | str | os.PathLike] | None = None) -> int:
        """Forget the decisions among these images (every decision when `refs` is None)."""
        count = forget_decisions(self.catalog, None if refs is None else [self.image_id(r) for r in refs])
        self.events.emit(LibraryChanged(None, "duplicates"))
        return count

    def duplicate_decisions(self) -> list[Decision]:
        return list_decisions(self.catalog)

    def export_duplicates_csv(
        self, groups: Sequence[DuplicateGroup], dest: str | os.PathLike, excel: bool = False
    ) -> Path:
        return write_duplicates_csv(groups, dest, excel=excel)

    # --- the query bar -------------------------------------------------------------------

    def parse_query(self, text: str) -> ParsedQuery:
        """Split query bar text into filters (for SQLite) and the text for CLIP."""
        return parse_query(text, extra_fields(self.catalog))

    def search_query(
        self,
        text: str,
        k: int = 20,
        *,
        filters: Filters | None = None,
        terms: Sequence[QueryTerm] = (),
        exact: bool = False,
    ) -> SearchResponse:
        """Search with query bar text (`folder:chairs tag:oak red armchair`), plus optional other
        terms (a dropped image) and filters (a filter panel's)."""
        parsed = self.parse_query(text)
        from visualfinder.library.facade import QueryTerm, SearchRequest

        all_terms = [*terms]
        if parsed.text:
            all_terms.append(QueryTerm("text", parsed.text))
        all_terms += [QueryTerm("text", t, weight=-1.0) for t in parsed.minus]
        merged = parsed.filters.merged(filters) if filters is not None else parsed.filters
        return self.search(SearchRequest(all_terms, k=k, filters=merged, exact=exact))
