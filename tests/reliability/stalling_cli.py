"""Run the visualfinder CLI with files whose reads never finish, as on a stalled network share.

    python stalling_cli.py NAME -- CLI ARGS...

Opening any file called NAME blocks its thread forever (through Python's audit hooks, with no
change to the code under test), so only the per-file time limit can end it: the outcome is the
same on a fast machine and on a slow one.
"""

from __future__ import annotations

import os
import sys
import threading


def main() -> int:
    name = sys.argv[1]
    cli_args = sys.argv[sys.argv.index("--") + 1 :]
    never = threading.Event()

    def hook(event: str, args: tuple) -> None:
        if (
            event == "open"
            and isinstance(args[0], (str, bytes))
            and os.path.basename(os.fsdecode(args[0])) == name
        ):
            never.wait()

    sys.addaudithook(hook)
    from visualfinder.cli.main import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main())
