"""The results grid's model: search results in the order the user chose, with a similarity threshold.

Sorting and the threshold are a view over the results of one search, so they never re-query:
both are a Python sort/filter over plain records (a few milliseconds for 10k results) and one
model reset. Thumbnails come from the ThumbnailLoader on demand (only rows being painted ask).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from datetime import datetime

from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, QPersistentModelIndex, Qt, QUrl

from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.search.planner import SearchResult

ResultRole = Qt.ItemDataRole.UserRole + 1
ScoreRole = Qt.ItemDataRole.UserRole + 2
KeptRole = Qt.ItemDataRole.UserRole + 3  # score at or above the threshold
PathRole = Qt.ItemDataRole.UserRole + 4
SecondLineRole = Qt.ItemDataRole.UserRole + 5

# Sort keys shown in the filter panel: (key, label, descending by default)
SORT_KEYS = (
    ("similarity", "Similarity", True),
    ("name", "Name", False),
    ("date", "Date modified", True),
    ("folder", "Folder", False),
    ("price", "Price", False),
)
_DESCRIPTION_TIP_CHARS = 400

AnyIndex = QModelIndex | QPersistentModelIndex


class ResultsModel(QAbstractListModel):
    def __init__(self, thumbnails: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self._results: list[SearchResult] = []  # as ranked by the search
        self._rows: list[SearchResult] = []  # as shown
        self._row_of: dict[str, int] = {}
        self.sort_key = "similarity"
        self.descending = True
        self.threshold = 0.0
        self.hide_below = False
        thumbnails.ready.connect(self._on_thumbnail)

    # --- contents ------------------------------------------------------------------------

    def set_results(self, results: Sequence[SearchResult]) -> None:
        self._results = list(results)
        self._relayout()

    def clear(self) -> None:
        self.set_results([])

    def set_sort(self, key: str, descending: bool) -> None:
        if key not in {k for k, _, _ in SORT_KEYS}:
            raise ValueError(f"unknown sort key {key!r}")
        if (key, descending) != (self.sort_key, self.descending):
            self.sort_key, self.descending = key, descending
            self._relayout()

    def set_threshold(self, threshold: float, hide_below: bool) -> None:
        if (threshold, hide_below) == (self.threshold, self.hide_below):
            return
        relayout = hide_below or self.hide_below  # rows appear or disappear
        self.threshold, self.hide_below = threshold, hide_below
        if relayout:
            self._relayout()
        elif self._rows:  # greyed, not hidden: same rows, same order, only their look changes
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1), [KeptRole])

    def _relayout(self) -> None:
        rows = self._results
        if self.hide_below:
            rows = [r for r in rows if r.score >= self.threshold]
        rows = sorted_results(rows, self.sort_key, self.descending)
        self.beginResetModel()
        self._rows = rows
        self._row_of = {r.record.path: i for i, r in enumerate(rows)}
        self.endResetModel()

    @property
    def total(self) -> int:
        """Results of the search, shown or not."""
        return len(self._results)

    def kept(self) -> list[SearchResult]:
        """Results at or above the threshold, in the order shown: what Export writes."""
        return [r for r in self._rows if r.score >= self.threshold]

    def result(self, row: int) -> SearchResult:
        return self._rows[row]

    def results(self, indexes: Iterable[AnyIndex] | None = None) -> list[SearchResult]:
        if indexes is None:
            return list(self._rows)
        return [self._rows[i.row()] for i in sorted(indexes, key=lambda i: i.row()) if i.isValid()]

    def row_of(self, path: str) -> int | None:
        return self._row_of.get(path)

    def update_tags(self, tags: dict[int, list[str]]) -> None:
        """Show tags edited in place (no new search needed)."""
        for row, result in enumerate(self._rows):
            if result.id in tags:
                result.record.tags = list(tags[result.id])
                index = self.index(row)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.ToolTipRole, SecondLineRole])

    # --- Qt model ------------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        result = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return result.label
        if role == Qt.ItemDataRole.DecorationRole:
            record = result.record
            return self.thumbnails.pixmap(record.path, (record.thumb_path or "", record.path))
        if role == ScoreRole:
            return result.score
        if role == KeptRole:
            return result.score >= self.threshold
        if role == ResultRole:
            return result
        if role == PathRole:
            return result.record.path
        if role == SecondLineRole:
            return second_line(result)
        if role == Qt.ItemDataRole.ToolTipRole:
            return tooltip(result)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{result.label}, similarity {result.score:.3f}"
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list", "text/plain"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        """Dragging results out gives the files (to a file manager, a mail, another app)."""
        mime = QMimeData()
        paths = [r.record.path for r in self.results(indexes)]
        mime.setUrls([QUrl.fromLocalFile(p) for p in paths])
        mime.setText("\n".join(paths))
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def _on_thumbnail(self, key: str) -> None:
        row = self._row_of.get(key)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


def sorted_results(results: Sequence[SearchResult], key: str, descending: bool) -> list[SearchResult]:
    """Results ordered by `key`; results without a value (no price) go last either way."""
    if key == "similarity":
        return sorted(results, key=lambda r: (r.score, -r.rank), reverse=descending)
    if key == "name":
        return sorted(results, key=lambda r: (r.label.casefold(), r.rank), reverse=descending)
    if key == "date":
        return sorted(results, key=lambda r: (r.record.mtime_ns, -r.rank), reverse=descending)
    if key == "folder":
        return sorted(
            results, key=lambda r: (os.path.dirname(r.record.path).casefold(), r.label.casefold()),
            reverse=descending,
        )  # fmt: skip
    if key == "price":
        priced = [r for r in results if r.record.price is not None]
        unpriced = [r for r in results if r.record.price is None]
        return sorted(priced, key=lambda r: (r.record.price, -r.rank), reverse=descending) + unpriced
    raise ValueError(f"unknown sort key {key!r}")


def format_price(price: float | None) -> str:
    return "" if price is None else f"{price:,.2f}"


def second_line(result: SearchResult) -> str:
    price = format_price(result.record.price)
    return f"{result.score:.3f}" + (f"  ·  {price}" if price else "")


def tooltip(result: SearchResult) -> str:
    """Everything known about a result, as rich text (escaped: titles come from user files)."""
    r = result.record
    e = html.escape
    rows = [f"<b>{e(r.title)}</b>" if r.title else f"<b>{e(r.file_name)}</b>"]
    rows.append(f"<span style='white-space:pre'>{e(r.path)}</span>")
    facts = [f"similarity <b>{result.score:.3f}</b>", f"distance {result.distance:.3f}"]
    if r.width and r.height:
        facts.append(f"{r.width}×{r.height}")
    facts.append(datetime.fromtimestamp(r.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M"))
    rows.append(" · ".join(facts))
    if r.sku:
        rows.append(f"SKU: {e(r.sku)}")
    if r.price is not None:
        rows.append(f"Price: {format_price(r.price)}")
    if r.tags:
        rows.append(f"Tags: {e(', '.join(r.tags))}")
    for name, value in sorted((getattr(r, "extra", None) or {}).items()):  # imported extra columns
        if value not in (None, ""):
            rows.append(f"{e(str(name))}: {e(str(value))}")
    if r.description:
        text = (
            r.description
            if len(r.description) <= _DESCRIPTION_TIP_CHARS
            else r.description[:_DESCRIPTION_TIP_CHARS] + "…"
        )
        rows.append(f"<i>{e(text)}</i>")
    if r.url:
        rows.append(e(r.url))
    return "<qt>" + "<br>".join(rows) + "</qt>"
