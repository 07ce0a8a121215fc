"""`visualfinder search`: images, URLs, texts, indexed images and filters into one query."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from typing import TYPE_CHECKING

from visualfinder.cli.common import cancel_on_sigint, command, open_cli_library, progress_bar, usage
from visualfinder.config import Settings

if TYPE_CHECKING:  # imported where used: `--help` loads neither numpy nor the search stack
    from visualfinder.catalog.filters import Filters
    from visualfinder.search.request import QueryTerm

log = logging.getLogger(__name__)


def add_parsers(sub) -> None:
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
    p.add_argument("-k", type=int, default=None, metavar="N",
                   help="number of results (default 20; with --batch, per photo, default 5)")  # fmt: skip
    p.add_argument("--batch", metavar="FOLDER",
                   help="match every photo in FOLDER: the top k catalog matches of each")  # fmt: skip
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


@command("search")
def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    if args.batch:
        return _batch(args, settings)
    from visualfinder.search.request import SearchRequest

    with open_cli_library(settings, one_shot=True) as library:
        terms, filters = _query_terms(args, library)
        request = SearchRequest(
            terms,
            k=20 if args.k is None else args.k,
            filters=filters.merged(_filters(args)),
            exact=args.exact,
            remote=args.remote,
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


def _batch(args: argparse.Namespace, settings: Settings) -> int:
    """--batch FOLDER: each photo's top k; a photo that cannot be read is reported and skipped."""
    if args.images or args.query or args.text or args.similar or args.minus or args.minus_text or args.crop:
        raise usage("--batch takes its query photos from FOLDER: give no IMAGE, --text, --query or --similar")
    if args.remote:
        raise usage("--batch searches this library, not --remote")
    from visualfinder.jobs import CancelToken

    cancel = CancelToken()
    with open_cli_library(settings) as library:
        with cancel_on_sigint(cancel), progress_bar() as progress:
            report = library.match_folder(args.batch, 5 if args.k is None else args.k, filters=_filters(args), progress=progress,
                                          cancel=cancel)  # fmt: skip
        if args.csv:
            library.export_batch_csv(report.matches, args.csv, excel=args.excel)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_batch(report)
    for failed in report.failed:
        print(f"{failed.photo}: {failed.error}", file=sys.stderr)
    if args.csv:
        print(f"wrote the matches of {len(report.matches)} photos to {args.csv}", file=sys.stderr)
    if not report.matches:
        print(f"no photos in {report.folder}", file=sys.stderr)
    return 1 if report.failed else 0


def _print_batch(report) -> None:
    """One line per photo: its best match and score (the CSV and JSON hold all k)."""
    if not report.matches:
        return
    width = max(len(os.path.basename(m.photo)) for m in report.matches)
    print(f"{'photo':<{width}}  {'score':>6}  best match")
    for match in report.matches:
        name = os.path.basename(match.photo)
        best = match.best
        if best is None:
            print(f"{name:<{width}}  {'-':>6}  ({match.error or 'no match'})")
            continue
        label = best.title or ""
        if best.record.sku:
            label = f"{label} [{best.record.sku}]".strip()
        print(f"{name:<{width}}  {best.score:>6.3f}  {best.path}  {label}".rstrip())


def _query_terms(args: argparse.Namespace, library) -> tuple[list[QueryTerm], Filters]:
    """The query terms and the filters typed among the words of --query / --text."""
    from visualfinder.catalog.filters import Filters
    from visualfinder.ingest.fetch import is_url
    from visualfinder.search.request import QueryTerm

    terms: list[QueryTerm] = []
    filters = Filters()
    if args.crop and len(args.images) != 1:
        raise usage("--crop needs a query IMAGE (exactly one)")
    crop = _parse_crop(args.crop) if args.crop else None
    for image in args.images:
        terms.append(QueryTerm("url" if is_url(image) else "image", image, crop=crop))
    for text in [*args.query, *args.text]:
        parsed = library.parse_query(text)
        filters = filters.merged(parsed.filters)
        terms += parsed.terms()
    terms += [QueryTerm("similar", p) for p in args.similar]
    terms += [QueryTerm("url" if is_url(m) else "image", m, weight=-1.0) for m in args.minus]
    terms += [QueryTerm("text", t, weight=-1.0) for t in args.minus_text]
    if terms and all(t.weight < 0 for t in terms):
        raise usage("minus terms need something to search for: an IMAGE, --text or --similar")
    if not terms and filters.is_empty() and _filters(args).is_empty():
        raise usage("give a query: an IMAGE, --text, --query or --similar")
    return terms, filters


def _filters(args: argparse.Namespace) -> Filters:
    from visualfinder.catalog.filters import Filters
    from visualfinder.paths import normalise
    from visualfinder.search.query_bar import parse_date, parse_size

    fields = []
    for cond in args.where:
        fields += _where(cond)
    return Filters(
        folders=[normalise(f) for f in args.folder],
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
    match = re.match(r"^\s*([^=~<>]+?)\s*(<=|>=|=|~|<|>)(.*)$", cond)
    if not match:
        raise usage(f"--where {cond!r}: use FIELD=VALUE, FIELD~TEXT or FIELD<NUMBER")
    name, op, value = match.groups()
    from visualfinder.search.query_bar import field_conditions

    return field_conditions(name, op + value) if op != "=" else field_conditions(name, "=" + value)


def _parse_crop(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise usage(f"--crop {text!r}: expected X,Y,W,H") from None
    if w <= 0 or h <= 0:
        raise usage("--crop width and height must be positive")
    return x, y, w, h


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
