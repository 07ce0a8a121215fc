"""The duplicates window's list of groups: all groups held, shown a page at a time (fetchMore).

A report may hold thousands of groups; the view asks for the next page as it scrolls to the
end, so the list never builds thousands of rows at once, and thumbnails are asked for only for
the rows it paints. Groups found while the search runs join the end (`add_groups`); resolved
groups leave the list.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.search.duplicates import DuplicateGroup

PAGE = 200
TIER_NAMES = {"identical": "Identical files", "same_picture": "Same picture", "similar": "Similar"}
GroupRole = Qt.ItemDataRole.UserRole + 1

_Index = QModelIndex | QPersistentModelIndex


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


class DuplicateGroupsModel(QAbstractListModel):
    """Groups of one tier (or all), `PAGE` rows more each time the view reaches the end."""

    def __init__(self, thumbnails: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self._all: list[DuplicateGroup] = []
        self._groups: list[DuplicateGroup] = []
        self._shown = 0
        self.tier: str | None = None
        thumbnails.ready.connect(self._on_thumbnail)

    # --- contents ------------------------------------------------------------------------

    def set_groups(self, groups: list[DuplicateGroup]) -> None:
        self._all = list(groups)
        self._refilter()

    def add_groups(self, groups: list[DuplicateGroup]) -> None:
        """More groups of the running search: they join the end of the list, filling the first
        page at once; beyond it they come with the next fetchMore."""
        self._all.extend(groups)
        fresh = [g for g in groups if self.tier is None or g.tier == self.tier]
        self._groups.extend(fresh)
        show = min(PAGE, len(self._groups)) - self._shown
        if show > 0:
            self.beginInsertRows(QModelIndex(), self._shown, self._shown + show - 1)
            self._shown += show
            self.endInsertRows()

    def set_tier(self, tier: str | None) -> None:
        self.tier = tier
        self._refilter()

    def _refilter(self) -> None:
        self.beginResetModel()
        self._groups = [g for g in self._all if self.tier is None or g.tier == self.tier]
        self._shown = min(PAGE, len(self._groups))
        self.endResetModel()

    def counts(self) -> dict[str | None, int]:
        """Groups left per tier (None: all)."""
        counts: dict[str | None, int] = dict.fromkeys(TIER_NAMES, 0)
        for group in self._all:
            counts[group.tier] += 1
        counts[None] = len(self._all)
        return counts

    @property
    def total(self) -> int:
        """Groups of the chosen tier, shown or not yet."""
        return len(self._groups)

    def groups(self) -> list[DuplicateGroup]:
        """Every group of the chosen tier (what an export writes)."""
        return list(self._groups)

    def group(self, row: int) -> DuplicateGroup | None:
        return self._groups[row] if 0 <= row < self._shown else None

    def remove(self, group: DuplicateGroup) -> int:
        """A resolved group leaves the list; returns the row it had (-1 if it was not shown)."""
        self._all = [g for g in self._all if g is not group]
        row = next((i for i, g in enumerate(self._groups) if g is group), -1)
        if row < 0:
            return -1
        if row < self._shown:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._groups[row]
            self._shown -= 1
            self.endRemoveRows()
            return row
        del self._groups[row]
        return -1

    # --- Qt model ------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else self._shown

    def canFetchMore(self, parent: _Index = QModelIndex()) -> bool:  # noqa: B008 - Qt's signature
        return not parent.isValid() and self._shown < len(self._groups)

    def fetchMore(self, parent: _Index = QModelIndex()) -> None:  # noqa: B008 - Qt's signature
        if parent.isValid():
            return
        more = min(PAGE, len(self._groups) - self._shown)
        if more <= 0:
            return
        self.beginInsertRows(QModelIndex(), self._shown, self._shown + more - 1)
        self._shown += more
        self.endInsertRows()

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        group = self.group(index.row()) if index.isValid() else None
        if group is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            size = sum(r.size for r in group.members)
            name = group.members[group.suggested].file_name
            return f"{name}\n{TIER_NAMES[group.tier]} · {len(group.members)} files · {human_bytes(size)}"
        if role == Qt.ItemDataRole.DecorationRole:
            best = group.members[group.suggested]
            return self.thumbnails.pixmap(best.path, [best.thumb_path or "", best.path])
        if role == Qt.ItemDataRole.ToolTipRole:
            return "\n".join(r.path for r in group.members)
        if role == GroupRole:
            return group
        return None

    def _on_thumbnail(self, key: str) -> None:
        for row in range(self._shown):
            group = self._groups[row]
            if group.members[group.suggested].path == key:
                index = self.index(row)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
