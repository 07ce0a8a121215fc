"""Commands on the library itself: index, watch, status, rebuild-index, remove-folder."""

from __future__ import annotations

import argparse
import json
import sys
import time

from visualfinder.cli.common import cancel_on_sigint, command, open_cli_library, progress_bar
from visualfinder.config import Settings
from visualfinder.ingest.retry import PERMANENT, TRANSIENT
from visualfinder.jobs import CancelToken


def add_parsers(sub) -> None:
    p = sub.add_parser("index", help="add folders and index their images")
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="folders to add (none: update every catalog folder)"
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="mark these folders watched (kept indexed by `watch` and the app)",
    )
    p.add_argument(
        "--retry-skipped",
        action="store_true",
        help="try every skipped file again, even those that did not change",
    )

    p = sub.add_parser("watch", help="keep watched folders indexed until Ctrl+C (headless)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders to add, mark watched and watch (none: every watched folder)")  # fmt: skip

    p = sub.add_parser("status", help="library size, model, metric, index health, errors")
    p.add_argument("--json", action="store_true", help="print status as JSON")
    p.add_argument("--all-errors", action="store_true", help="list every skipped file")

    sub.add_parser("rebuild-index", help="rebuild the vector index from stored embeddings")

    p = sub.add_parser("remove-folder", help="forget a catalog folder and its images (files stay on disk)")
    p.add_argument("path", metavar="PATH")


@command("index")
def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library:
        if not args.paths and not library.folders():
            print(
                "visualfinder: error: no catalog folders yet; give a folder: visualfinder index PATH",
                file=sys.stderr,
            )
            return 2
        cancel = CancelToken()
        with cancel_on_sigint(cancel), progress_bar() as progress:
            report = library.index(args.paths or None, watched=True if args.watch else None,
                                   progress=progress, cancel=cancel, retry_skipped=args.retry_skipped)  # fmt: skip
        requested, model_key = library.requested_model.key, library.model_key
    for path, reason in report.folder_errors:
        print(f"visualfinder: warning: {path}: {reason}", file=sys.stderr)
    if report.metadata_updated:
        print(f"{report.metadata_updated} images got product metadata from sidecar files")
    if requested != model_key:
        print(f"note: the library uses {model_key}; to switch to {requested} run `visualfinder switch-model`",
              file=sys.stderr)  # fmt: skip
    if report.errors:
        print(f"skipped {len(report.errors)} file(s):", file=sys.stderr)
        for error in report.errors:
            print(f"  {error.path}: {error.reason}{'' if error.kind == PERMANENT else ' (tried again later)'}",
                  file=sys.stderr)  # fmt: skip
    verb = "cancelled after" if report.cancelled else "done in"
    print(f"{verb} {report.seconds:.1f}s: {report.summary()}")
    if args.watch:
        print("these folders are now watched: `visualfinder watch` (or the app) keeps them indexed")
    return 130 if report.cancelled else 0


@command("status")
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library:
        status = library.status(error_limit=None if args.all_errors or args.json else 20)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
        return 0
    s = status.stats
    print(f"data dir:   {status.data_dir}")
    from visualfinder.models.embedder import model_label, precision_of_key  # imported by the library already

    print(f"model:      {model_label(status.model, status.pretrained, precision_of_key(status.model_key))} "
          f"on {status.device}")  # fmt: skip
    if status.switch is not None:
        sw = status.switch
        print(f"switch:     to {sw.target.name} ({sw.target.pretrained}): {sw.embedded}/{sw.total} embedded; "
              "run `visualfinder switch-model` to resume")  # fmt: skip
    elif status.requested_model_key != status.model_key:
        print(
            f"            settings ask for {status.requested_model_key}: `visualfinder switch-model` switches"
        )
    if len(status.stored_models) > 1:
        stored = ", ".join(f"{key} {count}" for key, count in status.stored_models.items())
        print(f"vectors:    {stored}")
    meaning = (
        "score = 1 - d²/2, distance = Euclidean" if status.metric == "l2" else "score = cosine similarity"
    )
    print(f"metric:     {status.metric} ({meaning}), index {status.index_dtype}")
    counts = status.skipped_counts
    kinds = (
        f" ({counts.get(TRANSIENT, 0)} could not be read now, {counts.get(PERMANENT, 0)} not images)"
        if s.errors
        else ""
    )
    print(f"images:     {s.ok} indexed, {s.errors} skipped{kinds}, {s.needs_embedding} awaiting embedding")
    print(f"index:      {status.index_count} vectors, {status.index_health} "
          f"(generation {status.index_generation}/{status.catalog_generation})")  # fmt: skip
    if s.outbox_pending:
        print(f"sync:       {s.outbox_pending} changes waiting for OpenSearch")
    print(f"folders:    {len(status.folders)}")
    for f in status.folders:
        flags = (" watched" if f.folder.watched else "") + ("" if f.exists else " MISSING")
        print(f"  {f.folder.path}: {f.ok} images, {f.errors} skipped{flags}")
    _print_skipped(status.skipped, s.errors)
    return 0


_KIND_HEADINGS = {
    TRANSIENT: "skipped, could not be read now (tried again on later scans; `index --retry-skipped` tries all now):",
    PERMANENT: "skipped, not a readable image (tried again when the file changes):",
}


def _print_skipped(skipped, total: int) -> None:
    """The skipped files by kind (transient ones first, as listed), with when each is retried."""
    for kind in (TRANSIENT, PERMANENT):
        files = [f for f in skipped if f.kind == kind]
        if not files:
            continue
        print(_KIND_HEADINGS[kind])
        for f in files:
            retry = ""
            if kind == TRANSIENT:
                when = "next scan" if f.retry_at is None or f.retry_at <= time.time() else (
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(f.retry_at)))  # fmt: skip
                retry = f" ({f.attempts} attempt{'s' if f.attempts != 1 else ''}, next: {when})"
            print(f"  {f.path}: {f.reason}{retry}")
    if total > len(skipped):
        print(f"  ... and {total - len(skipped)} more (--all-errors)")


@command("rebuild-index")
def cmd_rebuild_index(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library:
        cancel = CancelToken()
        with cancel_on_sigint(cancel), progress_bar() as progress:
            count = library.rebuild_index(progress, cancel)
    print(f"rebuilt the index: {count} vectors")
    return 0


@command("watch")
def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from visualfinder.cli.watch import run_watch  # watchdog is imported only when watching

    return run_watch(args, settings)


@command("remove-folder")
def cmd_remove_folder(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library:
        removed = library.remove_folder(args.path)
    print(f"removed {args.path} and its {removed} images from the library")
    return 0
