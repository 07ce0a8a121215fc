"""`Library.status()`: what `visualfinder status`, the app's status bar and the API report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from visualfinder.catalog.records import ModelRef
from visualfinder.catalog.store import Catalog, CatalogStats, Folder, SkippedFile
from visualfinder.config import Settings
from visualfinder.library.live_index import LiveIndex
from visualfinder.library.model_switch import SwitchState, switch_state


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
    skipped: list[SkippedFile]  # transient ones first; up to the caller's limit
    schema_version: int
    requested_model_key: str = ""
    switch: SwitchState | None = None
    stored_models: dict[str, int] = field(default_factory=dict)
    skipped_counts: dict[str, int] = field(default_factory=dict)  # all skipped files, by kind

    @property
    def errors(self) -> list[tuple[str, str]]:
        """(path, reason) of the skipped files listed."""
        return [(f.path, f.reason) for f in self.skipped]

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
            "error_files": [{"path": f.path, "reason": f.reason, "kind": f.kind, "attempts": f.attempts,
                             "retry_at": f.retry_at} for f in self.skipped],
            "skipped": self.skipped_counts,
            "schema_version": self.schema_version, "requested_model_key": self.requested_model_key,
            "switch": self.switch.to_json() if self.switch else None, "stored_models": self.stored_models,
        }  # fmt: skip


def library_status(
    settings: Settings, catalog: Catalog, live: LiveIndex, requested: ModelRef, error_limit: int | None = 50
) -> LibraryStatus:
    """The state of one library: its catalog counts, folders, model, index and recent errors."""
    engine = live.engine
    model, index = engine.model, engine.index
    stats = catalog.stats(model.key)
    counts = catalog.folder_counts()
    folders = [
        FolderStatus(f, *counts.get(f.id, (0, 0)), exists=os.path.isdir(f.path)) for f in catalog.folders()
    ]
    return LibraryStatus(
        data_dir=settings.data_dir, catalog_path=catalog.path, index_path=live.path,
        model=model.name, pretrained=model.pretrained, model_key=model.key,
        device=settings.device, metric=engine.metric, index_dtype=index.spec.dtype, stats=stats,
        folders=folders, index_count=len(index), index_generation=index.generation,
        catalog_generation=catalog.generation, index_health=live.health,
        skipped=catalog.skipped_files(error_limit), skipped_counts=catalog.skipped_counts(),
        schema_version=catalog.schema_version(),
        requested_model_key=requested.key, switch=switch_state(catalog),
        stored_models=catalog.model_counts(),
    )  # fmt: skip
