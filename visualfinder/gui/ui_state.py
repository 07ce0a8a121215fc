"""Window geometry, last folders and view choices, kept in QSettings across restarts.

Library settings (model, device, metric, thumbnails) live in `config.Settings`, not here; the
only library setting stored here is which data folder the app opened last.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow

from visualfinder.gui.filters_panel import DEFAULT_K, FiltersPanel


class UiState:
    def __init__(self, settings: QSettings):
        self.q = settings

    def _get(self, key: str, default, kind=str):
        value = self.q.value(key, default)
        if kind is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    def sync(self) -> None:
        self.q.sync()

    # --- window --------------------------------------------------------------------------

    def restore_window(self, window: QMainWindow) -> None:
        geometry = self.q.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            window.restoreGeometry(geometry)
        else:
            window.resize(1280, 820)
        splitter = self.q.value("window/splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            window.splitter.restoreState(splitter)

    def save_window(self, window: QMainWindow) -> None:
        self.q.setValue("window/geometry", window.saveGeometry())
        self.q.setValue("window/splitter", window.splitter.saveState())

    # --- view and filters ----------------------------------------------------------------

    @property
    def icon_size(self) -> int:
        return self._get("view/icon_size", 160, int)

    @icon_size.setter
    def icon_size(self, size: int) -> None:
        self.q.setValue("view/icon_size", size)

    def restore_filters(self, filters: FiltersPanel) -> None:
        # Read everything first: applying one value saves the view, which would overwrite the rest.
        k = self._get("search/k", DEFAULT_K, int)
        threshold = self._get("view/threshold", 0.0, float)
        hide = self._get("view/hide_below", False, bool)
        sort = self._get("view/sort", "similarity")
        descending = self._get("view/descending", True, bool)
        for widget in (filters.k, filters.threshold, filters.hide_below):
            widget.blockSignals(True)
        filters.k.setValue(k)
        filters.set_threshold(threshold)
        filters.threshold_label.setText(f"{filters.threshold_value:.2f}")
        filters.hide_below.setChecked(hide)
        for widget in (filters.k, filters.threshold, filters.hide_below):
            widget.blockSignals(False)
        filters.set_sort(sort, descending)  # emits viewChanged once, with every value in place

    def restore_filter_choice(self, filters: FiltersPanel) -> None:
        """The folder and tag chosen last time, once the library's folders and tags are known."""
        if filters.folder.currentIndex() <= 0:
            filters.select_folder(self._get("search/folder", "") or None)
        if filters.tag.currentIndex() <= 0:
            filters.select_tag(self._get("search/tag", "") or None)

    def save_view(self, filters: FiltersPanel) -> None:
        self.q.setValue("view/threshold", filters.threshold_value)
        self.q.setValue("view/hide_below", filters.hide_below.isChecked())
        self.q.setValue("view/sort", filters.sort_key)
        self.q.setValue("view/descending", filters.descending)

    def save_filters(self, filters: FiltersPanel) -> None:
        self.q.setValue("search/k", filters.k.value())
        self.q.setValue("search/folder", filters.folder.currentData() or "")
        self.q.setValue("search/tag", filters.tag.currentData() or "")

    # --- folders -------------------------------------------------------------------------

    def _dir(self, key: str) -> str:
        value = self._get(key, "")
        return value if value and Path(value).is_dir() else str(Path.home())

    @property
    def last_image_dir(self) -> str:
        return self._dir("paths/last_image_dir")

    @last_image_dir.setter
    def last_image_dir(self, path: str) -> None:
        self.q.setValue("paths/last_image_dir", path)

    @property
    def last_folder_dir(self) -> str:
        return self._dir("paths/last_folder_dir")

    @last_folder_dir.setter
    def last_folder_dir(self, path: str) -> None:
        self.q.setValue("paths/last_folder_dir", path)

    @property
    def last_export_dir(self) -> str:
        return self._dir("paths/last_export_dir")

    @last_export_dir.setter
    def last_export_dir(self, path: str) -> None:
        self.q.setValue("paths/last_export_dir", path)

    @property
    def watch_new_folders(self) -> bool:
        return self._get("folders/watch_new", True, bool)

    def set_watch_new_folders(self, watched: bool) -> None:
        self.q.setValue("folders/watch_new", watched)

    @property
    def data_dir(self) -> str:
        """The library folder chosen in Settings (used when neither --data-dir nor the env var is given)."""
        return self._get("library/data_dir", "")

    @data_dir.setter
    def data_dir(self, path: str) -> None:
        self.q.setValue("library/data_dir", path)
