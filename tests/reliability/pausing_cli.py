"""Run the visualfinder CLI and freeze it at a chosen point of its progress, for a kill -9 there.

    python pausing_cli.py MARKER POINT -- CLI ARGS...

POINT is `event:NAME` (the first audit event NAME: `sqlite3.connect` opens the catalog,
`os.scandir` starts the scan) or `reads:N:ROOT` (the read of the N+1-th image file below ROOT:
the files before it are read, decoded and committed batch by batch, then the reader waits).
The thread that reaches the point blocks forever (through Python's audit hooks, with no change
to the code under test) after writing one byte to MARKER, so the test kills a process whose
progress it knows, on a fast machine as on a slow one.
"""

from __future__ import annotations

import os
import sys
import threading

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def main() -> int:
    marker, point = sys.argv[1], sys.argv[2]
    cli_args = sys.argv[sys.argv.index("--") + 1 :]
    never = threading.Event()
    marker_fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    lock = threading.Lock()
    reads = [0]
    kind, _, rest = point.partition(":")
    limit, _, root = rest.partition(":")

    def pause() -> None:
        os.write(marker_fd, b"x")
        never.wait()

    def hook(event: str, args: tuple) -> None:
        if kind == "event" and event == rest:
            pause()
        elif kind == "reads" and event == "open" and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if path.startswith(root) and path.lower().endswith(IMAGE_SUFFIXES):
                with lock:
                    reads[0] += 1
                    over = reads[0] > int(limit)
                if over:
                    pause()

    sys.addaudithook(hook)
    from visualfinder.cli.main import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main())
