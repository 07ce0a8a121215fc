"""`Library.status()`: what `visualfinder status` and the app's status bar report.

A part of `service.Library` (it inherits this class), like library_catalog.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from visualfinder.catalog.store import CatalogStats, Folder
from visualfinder.models.switch import SwitchState, switch_state


@dataclass
class FolderStatus:
    folder: Folder
    ok: int
    errors: int
    exists: bool


@dataclass
class LibraryStatus:
    data_dir: Path
    catalog_path: Path
    index_path: Path
    model: str
    pretrained: str
    model_key: str
    device: str
    metric: str
    index_dtype: str
    stats: CatalogStats
    folders: list[FolderStatus]
    index_count: int
    index_generation: int
    catalog_generation: int
    index_health: str
    errors: list[tuple[str, str]]
    schema_version: int
    requested_model_key: str = ""
    switch: SwitchState | None = None
    stored_models: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        s = self.stats
        return {
            "data_dir": str(self.data_dir), "catalog_path": str(self.catalog_path), "index_path": str(self.index_path),
            "model": self.model, "pretrained": self.pretrained, "model_key": self.model_key,
            "device": self.device, "metric": self.metric, "index_dtype": self.index_dtype,
            "folders": [{"path": f.folder.path, "watched": f.folder.watched, "images": f.ok, "errors": f.errors,
                         "exists": f.exists} for f in self.folders],
            "images": s.images, "ok": s.ok, "errors": s.errors, "embedded": s.embedded_current,
            "needs_embedding": s.needs_embedding, "outbox_pending": s.outbox_pending,
            "index": {"count": self.index_count, "generation": self.index_generation,
                      "catalog_generation": self.catalog_generation, "health": self.index_health},
            "error_files": [{"path": p, "reason": r} for p, r in self.errors],
            "schema_version": self.schema_version, "requested_model_key": self.requested_model_key,
            "switch": self.switch.to_json() if self.switch else None, "stored_models": self.stored_models,
        }  # fmt: skip


class StatusFeatures:
    """Mixed into service.Library."""

    def status(self, error_limit: int | None = 50) -> LibraryStatus:
        stats = self.catalog.stats(self.model_key)
        counts = self.catalog.folder_counts()
        folders = [
            FolderStatus(f, *counts.get(f.id, (0, 0)), exists=os.path.isdir(f.path)) for f in self.folders()
        ]
        return LibraryStatus(
            data_dir=self.data_dir, catalog_path=self.catalog.path, index_path=self.index_path,
            model=self.model.name, pretrained=self.model.pretrained, model_key=self.model_key,
            device=self.settings.device, metric=self.metric, index_dtype=self.vector_index.spec.dtype, stats=stats,
            folders=folders, index_count=len(self.vector_index), index_generation=self.vector_index.generation,
            catalog_generation=self.catalog.generation, index_health=self.index_health,
            errors=self.catalog.errors(error_limit), schema_version=self.catalog.schema_version(),
            requested_model_key=self.requested_model.key, switch=switch_state(self),
            stored_models=self.catalog.model_counts(),
        )  # fmt: skip
