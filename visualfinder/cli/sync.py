"""`visualfinder sync`: the OpenSearch connection settings, the password in the keyring, pushing
the outbox, and its status.

Registered in cli.common's `@command` table; `add_parsers` adds its argparse sub-command.
"""

from __future__ import annotations

import argparse
import json
import sys

from visualfinder.cli.common import cancel_on_sigint, command, open_cli_library, progress_bar, usage
from visualfinder.config import REMOTE_ENGINES, Settings, update_settings_file
from visualfinder.errors import RemoteUnavailableError
from visualfinder.jobs import CancelToken


def add_parsers(sub) -> None:
    p = sub.add_parser("sync", help="push the library to an OpenSearch k-NN index (optional)")
    p.add_argument("--url", metavar="URL[,URL]", help="the cluster's URL (or several nodes' URLs); saved")
    p.add_argument("--index", metavar="NAME", help="the remote index (default: visualfinder); saved")
    p.add_argument("--user", metavar="NAME", help="user name; saved (the password goes to the OS keyring)")
    p.add_argument(
        "--ask-password", action="store_true", help="prompt for the password; stored in the OS keyring"
    )
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin; stored in the keyring"
    )
    p.add_argument(
        "--forget-password", action="store_true", help="remove the stored password from the keyring"
    )
    p.add_argument(
        "--ca-bundle", metavar="FILE", help="CA certificates (PEM) of a cluster with a private CA; saved"
    )
    p.add_argument(
        "--insecure", action="store_true", help="do NOT verify TLS certificates (warned about); saved"
    )
    p.add_argument(
        "--verify-tls", action="store_true", help="verify TLS certificates again (the default); saved"
    )
    p.add_argument(
        "--aws-region", metavar="REGION", help="sign requests (SigV4) for Amazon OpenSearch Service; saved"
    )
    p.add_argument(
        "--engine", choices=REMOTE_ENGINES, help="k-NN engine of a new remote index (default: auto)"
    )
    live = p.add_mutually_exclusive_group()
    live.add_argument("--live", dest="live", action="store_const", const=True,
                      help="push changes as they happen while `watch` or the app runs (the default); saved")  # fmt: skip
    live.add_argument("--no-live", dest="live", action="store_const", const=False,
                      help="push only when `visualfinder sync` runs; saved")  # fmt: skip
    p.add_argument(
        "--full", action="store_true", help="push every image again (e.g. after the remote index was lost)"
    )
    p.add_argument("--recreate", action="store_true",
                   help="delete the remote index and create it anew (e.g. for another model), then push everything")  # fmt: skip
    p.add_argument(
        "--retry-rejected", action="store_true", help="send documents the cluster rejected once more"
    )
    p.add_argument(
        "--status", action="store_true", help="pending changes, rejected documents, last success and error"
    )
    p.add_argument("--disable", action="store_true",
                   help="stop syncing: forget the URL and stop recording changes (the remote index stays)")  # fmt: skip
    p.add_argument("--check", action="store_true",
                   help="test the connection: server version, k-NN plugin, whether the index fits this library")  # fmt: skip
    p.add_argument("--json", action="store_true", help="with --status or --check: print it as JSON")


@command("sync")
def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from visualfinder.remote import credentials

    changes = {
        "remote_url": args.url, "remote_index": args.index, "remote_user": args.user,
        "remote_ca_bundle": args.ca_bundle, "remote_aws_region": args.aws_region, "remote_engine": args.engine,
        "remote_verify_tls": False if args.insecure else True if args.verify_tls else None,
        "remote_live_push": args.live,
    }  # fmt: skip
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.disable:
        changes["remote_url"] = ""
    if changes:
        update_settings_file(settings.data_dir, **changes)
        settings = settings.replace(**changes)
        if not args.disable:
            print(f"saved the sync settings in {settings.settings_path}", file=sys.stderr)
    if args.forget_password or args.ask_password or args.password_stdin:
        if not (settings.remote_user and settings.remote_urls):
            raise usage(
                "a password needs a user and a URL: visualfinder sync --url URL --user NAME --ask-password"
            )
        user, url = settings.remote_user, settings.remote_urls[0]
        if args.forget_password:
            gone = credentials.delete_password(user, url)
            print(
                f"{'removed the' if gone else 'there was no'} stored password for {user} at {url}",
                file=sys.stderr,
            )
            return 0
        else:
            password = _read_password(args.password_stdin)
            backend = credentials.set_password(user, url, password)
            print(f"stored the password for {user} at {url} in the OS keyring ({backend})", file=sys.stderr)
    with open_cli_library(settings) as library:
        if args.disable:
            dropped = library.remote.disable()
            print(f"sync is off: changes are no longer recorded ({dropped} queued changes dropped)")
            return 0
        if args.status:
            return _print_sync_status(library, args.json)
        if not settings.sync_configured:
            raise usage(
                "no OpenSearch URL configured: visualfinder sync --url https://HOST:9200 [--user NAME --ask-password]"
            )
        if args.check:
            check = library.remote.check()
            if args.json:
                print(json.dumps(check.to_json(), indent=2))
            else:
                print(f"connected to {', '.join(check.urls)}")
                print("\n".join(check.lines()))
            return 0 if check.ok else 1
        if args.retry_rejected:
            print(f"sending {library.remote.retry_rejected()} rejected changes again", file=sys.stderr)
        cancel = CancelToken()
        try:
            with cancel_on_sigint(cancel), progress_bar() as progress:
                report = library.remote.sync(
                    full=args.full, recreate=args.recreate, progress=progress, cancel=cancel
                )
        except RemoteUnavailableError as exc:
            pending = library.remote.pending()
            print(f"visualfinder: error: {exc}", file=sys.stderr)
            if pending:
                print(f"{pending} changed images are kept in the outbox; `visualfinder sync` sends them when the "
                      "cluster is back", file=sys.stderr)  # fmt: skip
            return exc.exit_code
    where = f"{', '.join(settings.remote_urls)} index {settings.remote_index}"
    verb = "cancelled after" if report.cancelled else "synced in"
    print(f"{verb} {report.seconds:.1f}s to {where}: {report.summary()}"
          + (" (full push)" if report.full else ""))  # fmt: skip
    if report.rejected:
        print(f"OpenSearch rejected {len(report.rejected)} documents (not retried until they change, "
              "or `sync --retry-rejected`):", file=sys.stderr)  # fmt: skip
        for r in report.rejected[:20]:
            print(f"  {r.path or r.doc_id}: {r.error}", file=sys.stderr)
        return 4
    return 130 if report.cancelled else 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass("OpenSearch password: ")
    if not password:
        raise usage("the password is empty")
    return password


def _print_sync_status(library, as_json: bool) -> int:
    import datetime

    status = library.remote.status()
    if as_json:
        print(json.dumps(status.to_json(), indent=2))
        return 0

    def when(ts: float | None) -> str:
        return datetime.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds") if ts else "never"

    if not status.configured:
        print("sync:         off (visualfinder sync --url https://HOST:9200 to turn it on)")
    else:
        who = f", user {status.user}" if status.user else ""
        print(f"sync:         {', '.join(status.urls)} index {status.index}{who}")
    print(
        f"pending:      {status.pending} changed images"
        + ("" if status.enabled else " (not recording changes yet)")
    )
    print(f"rejected:     {status.rejected_count} documents")
    for r in status.rejected:
        print(f"  {r.path or r.doc_id}: {r.error}")
    print(f"last success: {when(status.last_success)}")
    if status.last_error:
        print(f"last error:   {when(status.last_error_at)}: {status.last_error}")
    return 0
