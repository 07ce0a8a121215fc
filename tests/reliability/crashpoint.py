"""Run the visualfinder CLI and SIGKILL it just before its N-th file operation on the vector index.

    python crashpoint.py DATA_DIR N RECORD_FILE -- CLI ARGS...

Operations are seen through Python's audit hooks (`open`, `os.rename`/`os.replace`,
`os.remove`/`unlink`) on the index files and the data folder itself (its fsync), so the crash
lands between two real steps of the save, with no change to the code under test. N = -1 only
records the operations, one per line, in RECORD_FILE.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    data_dir, crash_at, record = os.path.realpath(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cli_args = sys.argv[sys.argv.index("--") + 1 :]
    seen: list[str] = []

    def relevant(path: object) -> str | None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None  # an open file descriptor
        full = os.path.realpath(os.fsdecode(path))
        if full == data_dir:
            return "<data dir>"
        if os.path.dirname(full) == data_dir and os.path.basename(full).startswith("index.usearch"):
            return os.path.basename(full)
        return None

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            name = relevant(args[0])
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = (
                args[1] if isinstance(args[1], str) else ("w" if flags & (os.O_WRONLY | os.O_RDWR) else "r")
            )
            what = f"open {name} {mode}"
        elif event == "os.rename":
            name = relevant(args[0])
            what = f"rename {name} -> {relevant(args[1])}"
        elif event == "os.remove":
            name = relevant(args[0])
            what = f"remove {name}"
        else:
            return
        if name is None:
            return
        seen.append(what)
        if len(seen) - 1 == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    from visualfinder.cli.main import main as cli_main

    code = cli_main(cli_args)
    if crash_at < 0:
        with open(record, "w", encoding="utf-8") as fh:
            fh.write("\n".join(seen) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
