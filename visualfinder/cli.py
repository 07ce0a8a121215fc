"""The `visualfinder` command: argparse on top of service.Library.

Global options go before the command; with no command the desktop app opens. User-facing
text lives here: the core raises typed errors and reports progress through callbacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import contextmanager

from visualfinder import __version__
from visualfinder.config import (
    BACKENDS,
    DEVICES,
    ENV_DATA_DIR,
    ENV_MODEL,
    ENV_PRETRAINED,
    METRICS,
    Settings,
)
from visualfinder.errors import VisualFinderError
from visualfinder.fetch import is_url
from visualfinder.jobs import CancelToken, Progress
from visualfinder.query import field_conditions, parse_date, parse_query, parse_size
from visualfinder.search import Filters
from visualfinder.service import QueryTerm, SearchRequest, open_library

log = logging.getLogger("visualfinder.cli")

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


# --- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visualfinder",
        description="Visual product search over your own image catalog. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"visualfinder {__version__}")
    parser.add_argument("--data-dir", metavar="DIR", help=f"library folder (env {ENV_DATA_DIR})")
    parser.add_argument("--model", metavar="NAME", help=f"open_clip model name (env {ENV_MODEL})")
    parser.add_argument(
        "--pretrained",
        metavar="TAG|FILE|none",
        help=f"pretrained tag, weights file, or none (env {ENV_PRETRAINED})",
    )
    parser.add_argument("--device", choices=DEVICES, help="where the model runs (default: auto)")
    parser.add_argument(
        "--metric", choices=METRICS, help="distance metric of a new library (change it later with set-metric)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="what runs the model: auto, torch or onnx (env VISUALFINDER_BACKEND)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", help="add folders and index their images")
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="folders to add (none: update every catalog folder)"
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="mark these folders watched (kept indexed by `watch` and the app)",
    )

    p = sub.add_parser("watch", help="keep watched folders indexed until Ctrl+C (headless)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders to add, mark watched and watch (none: every watched folder)")  # fmt: skip

    p = sub.add_parser("search", help="find the most similar catalog images")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="query image files or http(s) URLs; several are averaged")  # fmt: skip
    p.add_argument("-q", "--query", action="append", default=[], metavar="TEXT",
                   help='query bar text: filters and words, e.g. "folder:chairs tag:oak red armchair"')  # fmt: skip
    p.add_argument("--text", action="append", default=[], metavar="T",
                   help="describe what to find (CLIP text; filters like tag:oak work here too)")  # fmt: skip
    p.add_argument("--similar", action="append", default=[], metavar="PATH", help="an indexed image to match")
    p.add_argument(
        "--minus", action="append", default=[], metavar="IMAGE", help="less like this image (file or URL)"
    )
    p.add_argument("--minus-text", action="append", default=[], metavar="T", help="less like this text")
    p.add_argument("--crop", metavar="X,Y,W,H", help="search a region of IMAGE (pixels, or fractions <= 1)")
    p.add_argument("-k", type=int, default=20, metavar="N", help="number of results (default 20)")
    p.add_argument("--folder", action="append", default=[], metavar="P", help="only images below this folder")
    p.add_argument(
        "--tag", action="append", default=[], metavar="T", help="only images with this tag (all given)"
    )
    p.add_argument(
        "--any-tag", action="append", default=[], metavar="T", help="only images with any of these tags"
    )
    p.add_argument(
        "--type", action="append", default=[], metavar="EXT", help="only this file type (jpg, png, ...)"
    )
    p.add_argument("--after", metavar="DATE", help="modified on or after (2025, 2025-01, 2025-01-31, 7d)")
    p.add_argument("--before", metavar="DATE", help="modified before this date")
    p.add_argument("--min-size", metavar="SIZE", help="file at least this large (500kb, 2mb)")
    p.add_argument("--max-size", metavar="SIZE", help="file at most this large")
    p.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                   help="metadata condition: sku=AB-12, title~chair (contains), price<100, colour=red")  # fmt: skip
    p.add_argument("--exact", action="store_true", help="exact search instead of the HNSW index")
    p.add_argument("--remote", action="store_true", help="search the OpenSearch index this library syncs to")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--csv", metavar="OUT", help="also write the results to a CSV file")
    p.add_argument("--excel", action="store_true", help="write the CSV with a BOM for Excel")

    p = sub.add_parser("status", help="library size, model, metric, index health, errors")
    p.add_argument("--json", action="store_true", help="print status as JSON")
    p.add_argument("--all-errors", action="store_true", help="list every skipped file")

    sub.add_parser("rebuild-index", help="rebuild the vector index from stored embeddings")

    p = sub.add_parser("remove-folder", help="forget a catalog folder and its images (files stay on disk)")
    p.add_argument("path", metavar="PATH")

    from visualfinder import cli_catalog, cli_desktop, cli_sync  # their commands import helpers from here

    cli_catalog.add_parsers(sub)
    cli_sync.add_parsers(sub)
    cli_desktop.add_parsers(sub)
    return parser


# --- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_unencodable_output()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, query_images = split_image_arguments(parser, argv)
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        settings = Settings.load(
            args.data_dir,
            model=args.model,
            pretrained=args.pretrained,
            device=args.device,
            metric=args.metric,
            backend=args.backend,
        )
        _explicit["metric"] = args.metric if args.command != "set-metric" else None
        if args.command is None:
            from visualfinder.gui.app import run_app

            return run_app(settings, query_images[0] if query_images else None)
        return COMMANDS[args.command](args, settings)
    except VisualFinderError as exc:
        print(f"visualfinder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("visualfinder: interrupted", file=sys.stderr)
        return 130


def split_image_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """`visualfinder photo.jpg` (the file manager's "Open with", `Exec=visualfinder %F`) opens
    the app with that image as the query: returns (argv without the files, the files).

    Only when the first word after the global options is an existing file and not a command
    (the app says so if the file is not an image); anything else is left to argparse."""
    takes_value = {
        option for action in parser._actions if action.option_strings and action.nargs != 0
        for option in action.option_strings
    }  # fmt: skip
    commands = {
        name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }  # fmt: skip
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "--":
            break
        i += 2 if argv[i] in takes_value else 1
    options, rest = argv[:i], argv[i:]
    files_only = rest[:1] == ["--"]  # `visualfinder -- status`: a file called "status"
    if files_only:
        rest = rest[1:]
    if not rest or (rest[0] in commands and not files_only):
        return argv, []
    if not all(os.path.isfile(_local_path(word)) for word in rest):
        return argv, []
    return options, [_local_path(word) for word in rest]


def _local_path(word: str) -> str:
    """File managers may pass file:// URLs; the app wants paths."""
    if word.startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlparse(word).path)
    return word


# Options given on this command line that must agree with an existing library.
_explicit: dict[str, str | None] = {}


@contextmanager
def _library(settings: Settings):
    with _progress_bar() as progress:
        library = open_library(settings, progress)
    try:
        metric = _explicit.get("metric")
        if metric and metric != library.metric:
            raise _usage(
                f"this library uses the {library.metric} metric; --metric only applies when a library is "
                f"created (switch with `visualfinder set-metric {metric}`)"
            )
        yield library
    finally:
        library.close()


# --- commands ------------------------------------------------------------------------------


@command("index")
def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    with _library(settings) as library:
        if not args.paths and not library.folders():
            print(
                "visualfinder: error: no catalog folders yet; give a folder: visualfinder index PATH",
                file=sys.stderr,
            )
            return 2
        cancel = CancelToken()
        with _cancel_on_sigint(cancel), _progress_bar() as progress:
            report = library.index(args.paths or None, watched=True if args.watch else None,
                                   progress=progress, cancel=cancel)  # fmt: skip
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
            print(f"  {error.path}: {error.reason}", file=sys.stderr)
    verb = "cancelled after" if report.cancelled else "done in"
    print(f"{verb} {report.seconds:.1f}s: {report.summary()}")
    if args.watch:
        print("these folders are now watched: `visualfinder watch` (or the app) keeps them indexed")
    return 130 if report.cancelled else 0


@command("search")
def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    with _library(settings) as library:
        terms, filters = _query_terms(args, library)
        request = SearchRequest(
            terms, k=args.k, filters=filters.merged(_filters(args)), exact=args.exact, remote=args.remote
        )
        response = library.search(request)
        metric = library.metric
        if args.csv:
            library.export_csv(response.results, args.csv, excel=args.excel)
    log.info("%d results by %s %s search over %d candidates in %.0f ms", len(response.results), response.plan.where,
             response.plan.method, response.plan.candidates, response.seconds * 1000)  # fmt: skip
    if args.json:
        print(json.dumps([r.to_json() for r in response.results], indent=2, ensure_ascii=False))
    else:
        _print_results(response.results, metric)
    if args.csv:
        print(f"wrote {len(response.results)} results to {args.csv}", file=sys.stderr)
    return 0


@command("status")
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with _library(settings) as library:
        status = library.status(error_limit=None if args.all_errors or args.json else 20)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
        return 0
    s = status.stats
    print(f"data dir:   {status.data_dir}")
    print(f"model:      {status.model} ({status.pretrained}) on {status.device}")
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
    print(f"images:     {s.ok} indexed, {s.errors} skipped, {s.needs_embedding} awaiting embedding")
    print(f"index:      {status.index_count} vectors, {status.index_health} "
          f"(generation {status.index_generation}/{status.catalog_generation})")  # fmt: skip
    if s.outbox_pending:
        print(f"sync:       {s.outbox_pending} changes waiting for OpenSearch")
    print(f"folders:    {len(status.folders)}")
    for f in status.folders:
        flags = (" watched" if f.folder.watched else "") + ("" if f.exists else " MISSING")
        print(f"  {f.folder.path}: {f.ok} images, {f.errors} skipped{flags}")
    if status.errors:
        print("skipped files:")
        for path, reason in status.errors:
            print(f"  {path}: {reason}")
        if s.errors > len(status.errors):
            print(f"  ... and {s.errors - len(status.errors)} more (--all-errors)")
    return 0


@command("rebuild-index")
def cmd_rebuild_index(args: argparse.Namespace, settings: Settings) -> int:
    with _library(settings) as library:
        cancel = CancelToken()
        with _cancel_on_sigint(cancel), _progress_bar() as progress:
            count = library.rebuild_index(progress, cancel)
    print(f"rebuilt the index: {count} vectors")
    return 0


@command("watch")
def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from visualfinder.cli_watch import run_watch  # watchdog is imported only when watching

    return run_watch(args, settings)


@command("remove-folder")
def cmd_remove_folder(args: argparse.Namespace, settings: Settings) -> int:
    with _library(settings) as library:
        removed = library.remove_folder(args.path)
    print(f"removed {args.path} and its {removed} images from the library")
    return 0


# --- helpers -------------------------------------------------------------------------------


def _query_terms(args: argparse.Namespace, library) -> tuple[list[QueryTerm], Filters]:
    """The query terms and the filters typed among the words of --query / --text."""
    terms: list[QueryTerm] = []
    filters = Filters()
    if args.crop and len(args.images) != 1:
        raise _usage("--crop needs a query IMAGE (exactly one)")
    crop = _parse_crop(args.crop) if args.crop else None
    for image in args.images:
        terms.append(QueryTerm("url" if is_url(image) else "image", image, crop=crop))
    for text in [*args.query, *args.text]:
        parsed = parse_query(text, set(library.metadata_fields()))
        filters = filters.merged(parsed.filters)
        if parsed.text:
            terms.append(QueryTerm("text", parsed.text))
        terms += [QueryTerm("text", t, weight=-1.0) for t in parsed.minus]
    terms += [QueryTerm("similar", p) for p in args.similar]
    terms += [QueryTerm("url" if is_url(m) else "image", m, weight=-1.0) for m in args.minus]
    terms += [QueryTerm("text", t, weight=-1.0) for t in args.minus_text]
    if terms and all(t.weight < 0 for t in terms):
        raise _usage("minus terms need something to search for: an IMAGE, --text or --similar")
    if not terms and filters.is_empty() and _filters(args).is_empty():
        raise _usage("give a query: an IMAGE, --text, --query or --similar")
    return terms, filters


def _filters(args: argparse.Namespace) -> Filters:
    import os

    fields = []
    for cond in args.where:
        fields += _where(cond)
    return Filters(
        folders=[os.path.abspath(os.path.expanduser(f)) for f in args.folder],
        tags_all=list(args.tag),
        tags_any=list(args.any_tag),
        types=list(args.type),
        modified_after=parse_date(args.after, "--after") if args.after else None,
        modified_before=parse_date(args.before, "--before") if args.before else None,
        min_bytes=parse_size(args.min_size) if args.min_size else None,
        max_bytes=parse_size(args.max_size) if args.max_size else None,
        fields=fields,
    )


def _where(cond: str) -> list:
    """--where FIELD=VALUE, FIELD~TEXT, FIELD<N, FIELD<=N, FIELD>N, FIELD>=N."""
    import re

    match = re.match(r"^\s*([^=~<>]+?)\s*(<=|>=|=|~|<|>)(.*)$", cond)
    if not match:
        raise _usage(f"--where {cond!r}: use FIELD=VALUE, FIELD~TEXT or FIELD<NUMBER")
    name, op, value = match.groups()
    return field_conditions(name, op + value) if op != "=" else field_conditions(name, "=" + value)


def _parse_crop(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise _usage(f"--crop {text!r}: expected X,Y,W,H") from None
    if w <= 0 or h <= 0:
        raise _usage("--crop width and height must be positive")
    return x, y, w, h


def _usage(message: str) -> VisualFinderError:
    error = VisualFinderError(message)
    error.exit_code = 2
    return error


def _print_results(results, metric: str = "cosine") -> None:
    """A table; the figure is the similarity for cosine/ip and the Euclidean distance for l2."""
    if not results:
        print("no results")
        return
    width = max(len(r.path) for r in results)
    column = "dist" if metric == "l2" else "score"
    print(f"{'rank':>4}  {column:>6}  {'path':<{width}}  title")
    for r in results:
        figure = "-" if not r.ranked else f"{r.distance if metric == 'l2' else r.score:>6.3f}"
        label = r.title or ""
        if r.record.sku:
            label = f"{label} [{r.record.sku}]".strip()
        print(f"{r.rank:>4}  {figure:>6}  {r.path:<{width}}  {label}")


@contextmanager
def _progress_bar():
    """A ProgressCallback drawing one tqdm bar per phase on stderr (images/s and ETA)."""
    from tqdm import tqdm

    state: dict = {"bar": None, "phase": None}

    def report(p: Progress) -> None:
        bar = state["bar"]
        if p.phase != state["phase"]:
            if bar is not None:
                bar.close()
            unit = "img" if p.phase in ("indexing", "removing") else "item"
            bar = tqdm(total=p.total or None, desc=p.phase, unit=unit, file=sys.stderr, leave=False,
                       dynamic_ncols=True, disable=None)  # fmt: skip
            state["bar"], state["phase"] = bar, p.phase
        if p.total and bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        bar.refresh()

    try:
        yield report
    finally:
        if state["bar"] is not None:
            state["bar"].close()


@contextmanager
def _cancel_on_sigint(cancel: CancelToken):
    """First Ctrl+C: finish the current batch and stop cleanly. Second: stop now."""

    def handler(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\nstopping after the current batch (Ctrl+C again to abort)...", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _OwnLogsFilter(logging.Filter):
    """Without -v, hide third-party chatter (open_clip warns about random weights on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("visualfinder") or record.levelno >= logging.ERROR


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("visualfinder: %(levelname)s: %(message)s"))
    if verbosity < 2:
        handler.addFilter(_OwnLogsFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _quiet_unencodable_output() -> None:
    """File names need not be valid UTF-8: print them as the OS gave them instead of crashing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="surrogateescape")
        except (AttributeError, ValueError):  # pragma: no cover - replaced streams
            pass


if __name__ == "__main__":  # pragma: no cover - run as a script: use the package's module, whose
    from visualfinder.cli import main as package_main  # command table the other modules fill

    raise SystemExit(package_main())
