"""CLI commands for catalog work: metadata import, tags, duplicates, metric and model switching.

Registered in cli.common's `@command` table; `add_parsers` adds their argparse sub-commands.
"""

from __future__ import annotations

import argparse
import json
import sys

from visualfinder.cli.common import cancel_on_sigint, command, open_cli_library, progress_bar, usage
from visualfinder.config import METRICS, PRECISIONS, Settings
from visualfinder.jobs import CancelToken
from visualfinder.paths import normalise
from visualfinder.products.roles import MATCH_MODES, ROLES


def add_parsers(sub) -> None:
    p = sub.add_parser("import-metadata", help="import product metadata from CSV, JSON or JSON Lines")
    p.add_argument("file", metavar="FILE", help="columns: image (or path/file), sku, title, description, "
                   "tags, url, price; other columns are kept as extra fields")  # fmt: skip
    p.add_argument(
        "--base", metavar="DIR", help="folder that relative image paths start from (default: the file's)"
    )
    p.add_argument("--replace-tags", action="store_true", help="replace each image's tags instead of adding")
    p.add_argument("--dry-run", action="store_true", help="report what would match, change nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--column", action="append", default=[], metavar="NAME=ROLE",
                   help=f"what a column is, overriding its header: {', '.join(ROLES)} (repeatable)")  # fmt: skip
    p.add_argument("--match", choices=MATCH_MODES, default="auto",
                   help="how rows find their images: by image path, file name, or sku = file name "
                   "(default: the path column, else the sku)")  # fmt: skip
    p.add_argument("--report", metavar="OUT.csv", help="write matched and unmatched rows to a CSV file")

    p = sub.add_parser("tag", help="add, remove or list tags")
    p.add_argument("action", choices=("add", "remove", "list"))
    p.add_argument("path", nargs="?", metavar="PATH", help="an indexed image (list: omit for every tag)")
    p.add_argument("tags", nargs="*", metavar="TAG")

    p = sub.add_parser("duplicates", help="find duplicate images in three tiers; remember decisions")
    p.add_argument(
        "--threshold", type=float, metavar="X", help="CLIP similarity for 'similar' (default 0.95)"
    )
    p.add_argument("--folder", action="append", default=[], metavar="P", help="only images below this folder")
    p.add_argument("--tier", action="append", default=[], choices=("identical", "same_picture", "similar"),
                   help="show only this tier (repeatable)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the groups as JSON")
    p.add_argument("--csv", metavar="OUT", help="write one row per file of each group")
    p.add_argument("--excel", action="store_true", help="write the CSV with a BOM for Excel")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--distinct", nargs="+", metavar="PATH", help="remember: these are not duplicates")
    mode.add_argument("--keep-both", nargs="+", metavar="PATH", help="remember: keep all of these")
    mode.add_argument("--forget", nargs="+", metavar="PATH", help="forget the decisions among these files")
    mode.add_argument("--decisions", action="store_true", help="list remembered decisions")

    p = sub.add_parser("set-metric", help="switch the distance metric (rebuilds the index, no re-embedding)")
    p.add_argument("metric", choices=METRICS)

    p = sub.add_parser("switch-model", help="re-embed the library with another model (resumable)")
    p.add_argument(
        "model", nargs="?", metavar="NAME", help="open_clip model (default: resume the pending switch)"
    )
    p.add_argument("pretrained", nargs="?", metavar="TAG|FILE|none", help="its weights")
    p.add_argument(
        "--precision", choices=PRECISIONS, default=None,
        help="fp32, or int8 (~2x faster on a CPU, vectors a little different; default: model_precision)",
    )  # fmt: skip
    p.add_argument(
        "--abandon", action="store_true", help="forget the pending switch (keeps the library as is)"
    )

    p = sub.add_parser("forget-model", help="delete the stored vectors of a model the library no longer uses")
    p.add_argument("model_key", metavar="KEY", help="as listed by `visualfinder status`")


@command("import-metadata")
def cmd_import_metadata(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library:
        mapping = _column_mapping(library, args)
        report = library.products.import_metadata(
            args.file,
            base_dir=args.base,
            replace_tags=args.replace_tags,
            dry_run=args.dry_run,
            mapping=mapping,
        )
        if args.report:
            library.products.save_import_report(report, args.report)
            print(f"wrote the report to {args.report}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return 0
    verb = "would update" if report.dry_run else "updated"
    print(f"{report.rows} rows: {report.matched_rows} matched, {verb} {report.images_updated} images")
    for line, ref in report.unmatched:
        print(f"  line {line}: no image matches {ref}")
    for line, ref, count in report.ambiguous:
        print(f"  line {line}: {ref} matches {count} images; give a longer path")
    for line, problem in report.problems:
        print(f"  line {line}: {problem}")
    if report.without_metadata:
        print(f"{report.without_metadata} images have no product metadata, for example:")
        for path in report.without_metadata_sample[:10]:
            print(f"  {path}")
    return 0


def _column_mapping(library, args: argparse.Namespace):
    """--column and --match on top of what the headers suggest (a ColumnMapping); None: the
    headers alone decide."""
    from visualfinder.products.fields import ColumnMapping

    if not args.column and args.match == "auto":
        return None
    preview = library.products.preview_sheet(args.file, 0)
    roles = dict(preview.suggested.roles)
    for item in args.column:
        column, sep, role = item.rpartition("=")
        if not sep or not column:
            raise usage(f"--column takes NAME=ROLE, not {item!r}")
        if column not in roles:
            raise usage(f"the file has no column {column!r}; its columns: {', '.join(preview.columns)}")
        roles[column] = role.strip().lower()
    return ColumnMapping(roles, args.match)


@command("tag")
def cmd_tag(args: argparse.Namespace, settings: Settings) -> int:
    if args.action in ("add", "remove") and (not args.path or not args.tags):
        raise usage(f"tag {args.action} needs a PATH and at least one TAG")
    with open_cli_library(settings) as library:
        if args.action == "add":
            tags = library.products.add_tags(args.path, args.tags)
        elif args.action == "remove":
            tags = library.products.remove_tags(args.path, args.tags)
        elif args.path:
            tags = library.record(args.path).tags
        else:
            for tag, count in library.products.all_tags():
                print(f"{count:>6}  {tag}")
            return 0
    print(", ".join(tags) if tags else "(no tags)")
    return 0


@command("duplicates")
def cmd_duplicates(args: argparse.Namespace, settings: Settings) -> int:

    with open_cli_library(settings) as library:
        if args.distinct or args.keep_both:
            files = args.distinct or args.keep_both
            pairs = library.duplicates.mark_not_duplicates(
                files, "distinct" if args.distinct else "keep_both"
            )
            print(f"remembered {pairs} pair(s): they will not be grouped again")
            return 0
        if args.forget:
            print(f"forgot {library.duplicates.forget_decisions(args.forget)} decision(s)")
            return 0
        if args.decisions:
            for d in library.duplicates.decisions():
                print(f"{d.decision:<9}  {d.path_a}  {d.path_b}")
            return 0
        from visualfinder.catalog.filters import Filters  # not needed by --help (numpy)

        filters = Filters(folders=[normalise(f) for f in args.folder])
        cancel = CancelToken()
        with cancel_on_sigint(cancel), progress_bar() as progress:
            report = library.duplicates.find(
                args.threshold, filters=filters, progress=progress, cancel=cancel
            )
        groups = [g for g in report.groups if not args.tier or g.tier in args.tier]
        if args.csv:
            library.duplicates.export_csv(groups, args.csv, excel=args.excel)
    if args.json:
        data = report.to_json()
        data["groups"] = [g.to_json() for g in groups]
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif not args.csv:
        _print_groups(groups, report)
    if args.csv:
        print(f"wrote {len(groups)} groups to {args.csv}", file=sys.stderr)
    return 0


def _print_groups(groups, report) -> None:
    names = {"identical": "identical files", "same_picture": "same picture", "similar": "visually similar"}
    if not groups:
        print(f"no duplicates among {report.images} images")
    for number, group in enumerate(groups, start=1):
        print(f"group {number}: {names[group.tier]}")
        keep = group.suggested
        for position, (record, score) in enumerate(zip(group.members, group.similarity, strict=True)):
            size = f"{record.width}x{record.height}" if record.width else "?"
            mark = "keep" if position == keep else f"{score:.3f}"
            print(f"  {mark:>6}  {size:>11}  {record.size:>10}  {record.path}")
    if report.suppressed:
        print(f"({report.suppressed} pair(s) left out by remembered decisions)")


@command("set-metric")
def cmd_set_metric(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library, progress_bar() as progress:
        count = library.models.set_metric(args.metric, progress)
    print(f"the library now uses the {args.metric} metric ({count} vectors re-indexed)")
    return 0


@command("switch-model")
def cmd_switch_model(args: argparse.Namespace, settings: Settings) -> int:
    from visualfinder.models.embedder import precision_of_key

    with open_cli_library(settings) as library:
        pending = library.models.pending_switch()
        if args.abandon:
            library.models.abandon_switch()
            print("forgot the pending model switch" if pending else "no model switch was pending")
            return 0
        if args.model:
            model, pretrained = args.model, args.pretrained
            precision = args.precision or settings.model_precision
            if pretrained is None:
                raise usage("give the weights too: switch-model NAME PRETRAINED (a tag, a file, or none)")
        elif args.precision:  # the library's model in the other arithmetic
            model, pretrained, precision = library.model.name, library.model.pretrained, args.precision
        else:
            if pending is not None:
                target = pending.target
            elif library.requested_model.key != library.model_key:
                target = library.requested_model
            else:
                raise usage("give the model to switch to: switch-model NAME PRETRAINED [--precision int8]")
            model, pretrained, precision = target.name, target.pretrained, precision_of_key(target.key)
        cancel = CancelToken()
        print(
            f"switching from {library.model_key} to {model} ({pretrained}, {precision}); "
            "searches keep working meanwhile"
        )
        with cancel_on_sigint(cancel), progress_bar() as progress:
            report = library.models.switch(model, pretrained, progress, cancel, precision)
    for error in report.skipped:
        print(f"  skipped {error.path}: {error.reason}", file=sys.stderr)
    if report.swapped:
        print(f"the library now uses {report.target.key}: {report.summary()} in {report.seconds:.1f}s")
        return 0
    print(f"paused after {report.summary()}; run `visualfinder switch-model` to resume")
    return 130


@command("forget-model")
def cmd_forget_model(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library:
        removed = library.models.forget(args.model_key)
    print(f"deleted {removed} stored vectors of {args.model_key}")
    return 0
