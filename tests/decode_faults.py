"""Faults for decoder processes, installed by `IndexingPipeline.process_initializer` in each one.

Opening a file called crash.jpg ends the process at once (as a segfault in a native decoder
would); opening one called block.jpg blocks forever (a stalled network share). Through Python's
audit hooks, with no change to the code under test, and only inside decoder processes: the
pipeline's own threads read the same files normally.
"""

from __future__ import annotations

import os
import sys
import threading

CRASH_NAME = "crash.jpg"
BLOCK_NAME = "block.jpg"
CRASH_CODE = 7


def install(no_restart_marker: str | None = None) -> None:
    """The hooks; with `no_restart_marker`, a crash also leaves that file, and a worker that
    finds it at start exits at once (a replacement that cannot start)."""
    if no_restart_marker is not None and os.path.exists(no_restart_marker):
        os._exit(CRASH_CODE)
    never = threading.Event()

    def hook(event: str, args: tuple) -> None:
        if event != "open" or not isinstance(args[0], (str, bytes)):
            return
        name = os.path.basename(os.fsdecode(args[0]))
        if name == CRASH_NAME:
            if no_restart_marker is not None:
                open(no_restart_marker, "w").close()
            os._exit(CRASH_CODE)
        if name == BLOCK_NAME:
            never.wait()

    sys.addaudithook(hook)
