"""The Library's model and metric features: switching either, and the stored vectors per model.

A part of `service.Library` (it inherits this class), like library_catalog: a switch of metric
rebuilds the index from stored vectors; a switch of model re-embeds in the background
(model_switch) and installs the new engine at once when it is complete.
"""

from __future__ import annotations

from visualfinder.catalog.store import ModelRef
from visualfinder.config import METRICS
from visualfinder.errors import QueryError, SettingsError
from visualfinder.events import LibraryChanged
from visualfinder.jobs import BackgroundJob, CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.models.embedder import Embedder, model_key
from visualfinder.models.switch import SwitchReport, SwitchState, run_switch, switch_state


class ModelFeatures:
    """Mixed into service.Library."""

    def set_metric(
        self, metric: str, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """Switch the distance metric: rebuilds the index from stored vectors (no re-embedding)."""
        if metric not in METRICS:
            raise SettingsError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        with self._writing():
            if metric == self.metric:
                return len(self.vector_index)
            engine = self._new_engine(self.model, metric)
            engine.index.rebuild(
                self.catalog.iter_embeddings(self.model_key), self.catalog.count_embedded(self.model_key),
                self.catalog.generation, progress, cancel,
            )  # fmt: skip
            progress(Progress("saving index", 0, 0))
            engine.index.save(self.index_path)
            self.catalog.set_meta("metric", metric)
            self._engine = engine
            self._unsaved = False
        self.events.emit(LibraryChanged(None, "rebuild"))
        return len(engine.index)

    def switch_model(
        self,
        model: str,
        pretrained: str,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> SwitchReport:
        """Re-embed every image with another model, then make it the active one.

        Searches keep using the current model until the new vectors are complete; a cancelled
        or interrupted switch stays pending and resumes where it stopped when called again.
        """
        return run_switch(self, ModelRef(model, pretrained, model_key(model, pretrained)), progress, cancel)

    def start_model_switch(
        self, model: str, pretrained: str, progress: ProgressCallback = no_progress
    ) -> BackgroundJob:
        """`switch_model` on a background thread; its `result` is the SwitchReport."""
        job = BackgroundJob(
            "switch-model", lambda cancel: self.switch_model(model, pretrained, progress, cancel)
        )
        self._jobs = [j for j in self._jobs if not j.done] + [job]
        return job.start()

    def pending_model_switch(self) -> SwitchState | None:
        """The switch that was started and has not completed (resume it with `switch_model`)."""
        return switch_state(self)

    def abandon_model_switch(self) -> None:
        """Forget a pending switch; the vectors it computed stay until `forget_model`."""
        self.catalog.set_pending_switch(None)

    def stored_models(self) -> dict[str, int]:
        """Model key -> number of stored vectors (the active model, a pending switch, older ones)."""
        return self.catalog.model_counts()

    def forget_model(self, key: str) -> int:
        """Delete the stored vectors of a model that is neither active nor being switched to."""
        pending = self.catalog.pending_switch()
        if key == self.model_key or (pending is not None and pending.key == key):
            raise QueryError(f"{key} is in use by this library; its vectors cannot be forgotten")
        return self.catalog.delete_embeddings(key)

    def _install_switched_model(
        self, model: ModelRef, embedder: Embedder, progress: ProgressCallback
    ) -> None:
        """Under the writer lock: build `model`'s index from its stored vectors and make it active."""
        engine = self._new_engine(model, self.metric, embedder)
        engine.index.rebuild(
            self.catalog.iter_embeddings(model.key), self.catalog.count_embedded(model.key), 0, progress
        )
        engine.index.generation = self.catalog.set_active_model(model, finish_switch=True)
        self._engine = engine
        progress(Progress("saving index", 0, 0))
        self._save_index()
        self.events.emit(LibraryChanged(None, "model"))
