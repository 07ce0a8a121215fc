"""`visualfinder serve`: the HTTP API over this library (or, with --remote, over OpenSearch alone)."""

from __future__ import annotations

import argparse
import os
import sys

from visualfinder.cli.common import command, progress_bar
from visualfinder.config import Settings


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="the visual-search HTTP API (FastAPI; docs at /docs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs a token)")  # fmt: skip
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--remote", action="store_true",
                   help="stateless: search the OpenSearch index alone, with no local catalog")  # fmt: skip
    p.add_argument("--new-token", action="store_true",
                   help="make a new API token in the data folder (mode 0600), print it and exit")  # fmt: skip


@command("serve")
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from visualfinder.api.auth import ENV_TOKEN, new_token, token_path

    if args.new_token:
        token = new_token(settings)
        print(token)
        print(
            f"saved to {token_path(settings)}; clients send: Authorization: Bearer <token>", file=sys.stderr
        )
        if os.environ.get(ENV_TOKEN):
            print(f"note: {ENV_TOKEN} is set and takes precedence over the file", file=sys.stderr)
        return 0
    from visualfinder.api.server import serve

    with progress_bar() as progress:
        return serve(settings, args.host, args.port, remote=args.remote, progress=progress)
