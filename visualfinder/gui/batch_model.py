"""The batch-match table: one row per photo with its best match and score (or why it failed)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.library.batch import PhotoMatches

COL_PHOTO, COL_MATCH, COL_SCORE, COL_OTHERS = range(4)
HEADERS = ("Photo", "Best match", "Score", "Also")
MatchesRole = Qt.ItemDataRole.UserRole + 1

_Index = QModelIndex | QPersistentModelIndex


class BatchMatchModel(QAbstractTableModel):
    def __init__(self, thumbnails: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self._rows: list[PhotoMatches] = []
        thumbnails.ready.connect(self._on_thumbnail)

    def set_matches(self, matches: list[PhotoMatches]) -> None:
        self.beginResetModel()
        self._rows = list(matches)
        self.endResetModel()

    def matches(self) -> list[PhotoMatches]:
        return list(self._rows)

    def photo(self, row: int) -> PhotoMatches | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        match = self.photo(index.row()) if index.isValid() else None
        if match is None:
            return None
        column, best = index.column(), match.best
        if role == MatchesRole:
            return match
        if role == Qt.ItemDataRole.DisplayRole:
            if column == COL_PHOTO:
                return Path(match.photo).name
            if column == COL_MATCH:
                if best is None:
                    return match.error or "no match"
                label = best.record.title or best.record.file_name
                return f"{label} [{best.record.sku}]" if best.record.sku else label
            if column == COL_SCORE:
                return "" if best is None else f"{best.score:.3f}"
            if column == COL_OTHERS:
                return ", ".join(r.record.sku or r.record.file_name for r in match.results[1:])
        if role == Qt.ItemDataRole.DecorationRole:
            if column == COL_PHOTO:
                return self.thumbnails.pixmap(match.photo, [match.photo])
            if column == COL_MATCH and best is not None:
                return self.thumbnails.pixmap(best.path, [best.record.thumb_path or "", best.path])
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == COL_PHOTO:
                return match.photo
            if column == COL_MATCH:
                return best.path if best is not None else match.error
        if role == Qt.ItemDataRole.ForegroundRole and match.error and column == COL_MATCH:
            from PySide6.QtGui import QColor

            return QColor(190, 40, 40)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == COL_SCORE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _on_thumbnail(self, key: str) -> None:
        for row, match in enumerate(self._rows):
            best = match.best
            if match.photo == key or (best is not None and best.path == key):
                self.dataChanged.emit(self.index(row, COL_PHOTO), self.index(row, COL_MATCH),
                                      [Qt.ItemDataRole.DecorationRole])  # fmt: skip
