"""Products: a library's product data — imported sheets, fields edited by hand, and tags.

Every change is one catalog transaction that also queues the images for OpenSearch, and is
announced on the library's events ("metadata") so the app and the sync follow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from visualfinder.catalog.products import extra_fields, remember_extra_fields, write_fields
from visualfinder.catalog.records import META_FIELDS, ImageRecord
from visualfinder.catalog.store import Catalog
from visualfinder.errors import QueryError, StorageError
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.jobs import CancelToken, ProgressCallback, no_progress

if TYPE_CHECKING:  # the sheet readers load when a sheet is read: a search needs none of them
    from visualfinder.products.fields import ColumnMapping, SheetPreview
    from visualfinder.products.importer import ImportReport

ImageRef = int | str | os.PathLike


class Products:
    """Product metadata and tags of one library's images."""

    def __init__(self, catalog: Catalog, events: EventHub):
        self.catalog = catalog
        self.events = events

    def import_metadata(
        self,
        path: str | os.PathLike,
        *,
        base_dir: str | os.PathLike | None = None,
        replace_tags: bool = False,
        dry_run: bool = False,
        mapping: ColumnMapping | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        """Import product metadata (CSV, JSON, JSON Lines); the report lists what did not match.

        `mapping` says what each column is and how rows match images; without one the headers say."""
        from visualfinder.products.importer import import_file

        report = import_file(
            self.catalog, path, base_dir=os.fspath(base_dir) if base_dir else None,
            replace_tags=replace_tags, dry_run=dry_run, mapping=mapping, progress=progress, cancel=cancel,
        )  # fmt: skip
        if report.images_updated and not dry_run:
            self._changed()
        return report

    def preview_sheet(self, path: str | os.PathLike, limit: int = 20) -> SheetPreview:
        """The first rows and columns of a product sheet, and the mapping its headers suggest."""
        from visualfinder.products.fields import preview_sheet

        return preview_sheet(path, limit)

    def save_import_report(self, report: ImportReport, dest: str | os.PathLike, excel: bool = False):
        """Write an import's matched and unmatched rows to a CSV file (atomically)."""
        from visualfinder.products.export import write_import_report_csv

        try:
            return write_import_report_csv(report, dest, excel=excel)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc

    def update_metadata(
        self, ref: ImageRef, *, extra: dict[str, object] | None = None, **fields: object
    ) -> ImageRecord:
        """Set product fields (sku, title, description, url, price; None clears) and extra values."""
        unknown = set(fields) - set(META_FIELDS)
        if unknown:
            raise QueryError(
                f"unknown metadata field(s) {', '.join(sorted(unknown))}; use {', '.join(META_FIELDS)}"
            )
        if fields.get("price") not in (None, ""):
            from visualfinder.products.fields import parse_price

            try:
                fields["price"] = parse_price(fields["price"])
            except ValueError:
                raise QueryError(f"price {fields['price']!r} is not a number") from None
        image_id = self.catalog.image_id(ref)
        with self.catalog.transaction() as conn:
            write_fields(
                conn, image_id, {k: (v if v != "" else None) for k, v in fields.items()}, extra or {}
            )
            if extra:
                remember_extra_fields(conn, extra)
            self.catalog.enqueue_upserts(conn, [image_id])
        self._changed()
        return self.catalog.records([image_id])[image_id]

    def metadata_fields(self) -> list[str]:
        """Fields the query bar and `--where` accept: the product fields and imported extras."""
        return [*META_FIELDS, *sorted(extra_fields(self.catalog))]

    # --- tags ----------------------------------------------------------------------------

    def add_tags(self, ref: ImageRef, tags: Sequence[str]) -> list[str]:
        """Add tags to an image; returns its tags afterwards."""
        image_id = self.catalog.image_id(ref)
        self.catalog.add_tags(image_id, tags)
        self._changed()
        return self.catalog.tags_of(image_id)

    def remove_tags(self, ref: ImageRef, tags: Sequence[str]) -> list[str]:
        """Remove tags from an image; returns its tags afterwards."""
        image_id = self.catalog.image_id(ref)
        self.catalog.remove_tags(image_id, tags)
        self._changed()
        return self.catalog.tags_of(image_id)

    def all_tags(self) -> list[tuple[str, int]]:
        """Every tag in the library with its image count, most used first."""
        return self.catalog.tag_counts()

    def _changed(self) -> None:
        self.events.emit(LibraryChanged(None, "metadata"))
