"""The `visualfinder` command: the global options, the sub-commands of each topic, the entry point.

Global options go before the command; with no command the desktop app opens. User-facing
text lives in the cli package: the core raises typed errors and reports progress through callbacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from visualfinder import __version__
from visualfinder.cli import catalog as cli_catalog
from visualfinder.cli import desktop as cli_desktop
from visualfinder.cli import indexing as cli_indexing
from visualfinder.cli import prepare as cli_prepare
from visualfinder.cli import search as cli_search
from visualfinder.cli import serve as cli_serve
from visualfinder.cli import sync as cli_sync
from visualfinder.cli.common import COMMANDS, configure_logging, explicit, quiet_unencodable_output
from visualfinder.config import BACKENDS, DEVICES, ENV_DATA_DIR, ENV_MODEL, ENV_PRETRAINED, METRICS, Settings
from visualfinder.errors import VisualFinderError


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

    # Each topic adds its sub-commands; importing it registers its command functions.
    for topic in (cli_indexing, cli_search, cli_catalog, cli_sync, cli_serve, cli_desktop, cli_prepare):
        topic.add_parsers(sub)
    return parser


# --- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    quiet_unencodable_output()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, query_images = split_image_arguments(parser, argv)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = Settings.load(
            args.data_dir,
            model=args.model,
            pretrained=args.pretrained,
            device=args.device,
            metric=args.metric,
            backend=args.backend,
        )
        explicit["metric"] = args.metric if args.command != "set-metric" else None
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
        import urllib.parse
        import urllib.request

        return urllib.request.url2pathname(urllib.parse.urlparse(word).path)
    return word


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
