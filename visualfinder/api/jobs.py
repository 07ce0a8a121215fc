"""Indexing jobs started by `POST /folders`: one at a time on one thread, with their progress.

Each runs `Library.index` (the pipeline every front end uses) with a CancelToken that
shutdown sets, so a stopping server ends the batch in flight and keeps what it committed.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from visualfinder.errors import Cancelled
from visualfinder.ingest.pipeline import IndexReport
from visualfinder.jobs import CancelToken, Progress

log = logging.getLogger(__name__)


@dataclass
class IndexJob:
    id: str
    folder: str
    watched: bool
    state: str = "queued"  # queued, running, done, failed, cancelled
    phase: str = ""
    done: int = 0
    total: int = 0
    report: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: CancelToken = field(default_factory=CancelToken, repr=False)

    def to_json(self, expose_paths: bool = True) -> dict:
        return {
            "id": self.id, "folder": self.folder if expose_paths else None, "watched": self.watched,
            "state": self.state, "phase": self.phase, "done": self.done, "total": self.total,
            "report": self.report, "error": self.error, "created": self.created, "finished": self.finished,
        }  # fmt: skip


def report_json(report: IndexReport, expose_paths: bool = True) -> dict:
    return {
        "added": report.added, "updated": report.updated, "moved": report.moved, "reused": report.reused,
        "removed": report.removed, "unchanged": report.unchanged, "skipped": len(report.errors),
        "metadata_updated": report.metadata_updated, "cancelled": report.cancelled,
        "seconds": round(report.seconds, 3),
        "errors": [{"path": e.path if expose_paths else os.path.basename(e.path), "reason": e.reason}
                   for e in report.errors[:50]],
    }  # fmt: skip


class IndexJobs:
    """The API's indexing jobs for one library (kept for `GET /jobs/{id}` after they end)."""

    def __init__(self, library, expose_paths: bool = True, keep: int = 200):
        self.library = library
        self.expose_paths = expose_paths
        self.keep = keep
        self._jobs: dict[str, IndexJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vf-api-index")

    def start(self, path: str, watched: bool) -> IndexJob:
        """Register the folder now (a missing one is refused here) and index it in the background."""
        folder = self.library.add_folders([path], watched=True if watched else None)[0]  # never unwatches
        job = IndexJob(str(next(self._ids)), folder.path, watched)
        with self._lock:
            self._jobs[job.id] = job
            for old in list(self._jobs)[: max(0, len(self._jobs) - self.keep)]:
                if self._jobs[old].finished is not None:
                    del self._jobs[old]
        self._executor.submit(self._run, job)
        return job

    def get(self, job_id: str) -> IndexJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: IndexJob) -> None:
        if job.cancel.cancelled:
            job.state, job.finished = "cancelled", time.time()
            return
        job.state = "running"

        def progress(p: Progress) -> None:
            job.phase, job.done, job.total = p.phase, p.done, p.total

        try:
            report = self.library.index([job.folder], watched=True if job.watched else None, progress=progress,
                                        cancel=job.cancel, source="api")  # fmt: skip
            job.report = report_json(report, self.expose_paths)
            job.state = "cancelled" if report.cancelled else "done"
        except Cancelled:
            job.state = "cancelled"
        except Exception as exc:  # the job's reader learns why; the server goes on
            log.warning("indexing %s failed: %s", job.folder, exc, exc_info=not hasattr(exc, "exit_code"))
            job.state, job.error = "failed", str(exc)
        finally:
            job.finished = time.time()

    def close(self) -> None:
        """Cancel queued and running jobs; wait for the batch in flight to end."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.cancel()
        self._executor.shutdown(wait=True)
