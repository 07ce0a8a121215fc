"""`visualfinder prepare-model`: get the library's model ready on this machine ahead of use.

Download the weights, export both towers to ONNX Runtime (checked against torch), time the
backends under `backend = auto`, and keep the verdict beside the export: later commands then
start without torch on a CPU. The first command that needs the model does the same on its own.
"""

from __future__ import annotations

import argparse
import json

from visualfinder.cli.common import command, open_cli_library, progress_bar
from visualfinder.config import Settings


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "prepare-model", help="download, export and benchmark the library's model once, ahead of use"
    )
    p.add_argument("--json", action="store_true", help="print what was decided as JSON")


@command("prepare-model")
def cmd_prepare_model(args: argparse.Namespace, settings: Settings) -> int:
    with open_cli_library(settings) as library, progress_bar() as progress:
        result = library.embedder.prepare(progress)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    line = f"{result['model']} is ready on {result['device']} with the {result['backend']} backend"
    timings = result.get("timings")
    if timings:
        measured = ", ".join(
            f"{name.removesuffix('_text')} {seconds * 1000:.1f} ms/{'text' if name.endswith('_text') else 'image'}"
            for name, seconds in sorted(timings.items())
        )
        line += f" (measured on this machine: {measured})"
    print(f"{line}; took {result['seconds']:.1f}s")
    return 0
