"""Run the visualfinder CLI and tell the parent, through a pipe, when it starts and ends an index save.

    python savesignal.py DATA_DIR FD -- CLI ARGS...

Writes b"s" to file descriptor FD as `VectorIndex.save` begins (its first Python-visible step,
creating the data folder, right before usearch writes the temp file) and b"e" just before the
new sidecar is renamed into place (the save's last file operation but one folder fsync). The parent kills at a random moment in
between, from outside: a kill from another process lands even while usearch's C code runs.
Seen through Python's audit hooks, with no change to the code under test.
"""

from __future__ import annotations

import os
import sys


def _inside_index_save() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "save" and code.co_filename.endswith(
            os.path.join("visualfinder", "search", "vector_index.py")
        ):
            return True
        frame = frame.f_back
    return False


def main() -> int:
    data_dir, fd = os.path.realpath(sys.argv[1]), int(sys.argv[2])
    cli_args = sys.argv[sys.argv.index("--") + 1 :]
    sidecar_tmp = os.path.join(data_dir, "index.usearch.json.tmp")

    def hook(event: str, args: tuple) -> None:
        if event not in ("os.mkdir", "os.rename") or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path = os.path.realpath(os.fsdecode(args[0]))
        if event == "os.mkdir" and path == data_dir and _inside_index_save():
            os.write(fd, b"s")
        elif event == "os.rename" and path == sidecar_tmp:
            os.write(fd, b"e")  # just before the last rename: only a folder fsync follows

    sys.addaudithook(hook)
    from visualfinder.cli.main import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main())
