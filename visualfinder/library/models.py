"""Models: which model and metric a library uses, switching either, and the vectors kept per model.

A metric switch rebuilds the index from the stored vectors (no re-embedding); a model switch
re-embeds through the indexing pipeline in the background (`model_switch`) and installs the
new engine as soon as its vectors are complete.
"""

from __future__ import annotations

from visualfinder.catalog.records import ModelRef
from visualfinder.catalog.store import Catalog
from visualfinder.config import METRICS, Settings
from visualfinder.errors import QueryError, SettingsError
from visualfinder.events import EventHub, LibraryChanged
from visualfinder.jobs import BackgroundJob, CancelToken, JobList, Progress, ProgressCallback, no_progress
from visualfinder.library.indexing import Indexer
from visualfinder.library.live_index import LiveIndex
from visualfinder.library.model_switch import ModelSwitch, SwitchReport, SwitchState, switch_state
from visualfinder.models.embedder import model_key


class Models:
    """The model and metric features of one library."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        live: LiveIndex,
        indexer: Indexer,
        events: EventHub,
        jobs: JobList,
    ):
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self.events = events
        self._jobs = jobs
        self._switch = ModelSwitch(settings, catalog, live, indexer, events)

    def set_metric(
        self, metric: str, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """Switch the distance metric: rebuilds the index from stored vectors (no re-embedding)."""
        if metric not in METRICS:
            raise SettingsError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        live = self.live
        with live.writing():
            if metric == live.engine.metric:
                return len(live.index)
            engine = live.new_engine(live.engine.model, metric)
            live.fill(engine, progress, cancel)
            self.catalog.set_meta("metric", metric)
            live.install(engine, saved=False)
            progress(Progress("saving index", 0, 0))
            live.save()
        self.events.emit(LibraryChanged(None, "rebuild"))
        return len(engine.index)

    def switch(
        self,
        model: str,
        pretrained: str,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        precision: str | None = None,
    ) -> SwitchReport:
        """Re-embed every image with another model, then make it the active one. `precision`
        (fp32 or int8; None: the settings' model_precision) is part of what a model is: the
        same model in the other precision is a switch too.

        Searches keep using the current model until the new vectors are complete; a cancelled
        or interrupted switch stays pending and resumes where it stopped when called again.
        """
        key = model_key(model, pretrained, precision or self.settings.model_precision)
        return self._switch.run(ModelRef(model, pretrained, key), progress, cancel)

    def start_switch(
        self,
        model: str,
        pretrained: str,
        progress: ProgressCallback = no_progress,
        precision: str | None = None,
    ) -> BackgroundJob:
        """`switch` on a background thread; its `result` is the SwitchReport."""
        job = BackgroundJob(
            "switch-model", lambda cancel: self.switch(model, pretrained, progress, cancel, precision)
        )
        return self._jobs.start(job)

    def pending_switch(self) -> SwitchState | None:
        """The switch that was started and has not completed (resume it with `switch`)."""
        return switch_state(self.catalog)

    def abandon_switch(self) -> None:
        """Forget a pending switch; the vectors it computed stay until `forget`."""
        self.catalog.set_pending_switch(None)

    def forget(self, key: str) -> int:
        """Delete the stored vectors of a model that is neither active nor being switched to."""
        pending = self.catalog.pending_switch()
        if key == self.live.engine.model.key or (pending is not None and pending.key == key):
            raise QueryError(f"{key} is in use by this library; its vectors cannot be forgotten")
        return self.catalog.delete_embeddings(key)
