"""Reads that never finish, by construction, as on a stalled network share.

    with stalled_reads("slow.jpg"):
        library.index([root])   # opening any file named slow.jpg blocks until the block ends

Opening a file with a registered name blocks its thread (through one audit hook per process,
with no change to the code under test) until the `with` block ends, so only the per-file time
limit can end the read: the outcome is the same on a fast machine and on a slow one.
tests/reliability/stalling_cli.py does the same for a whole CLI run in a child process.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_gates: dict[str, threading.Event] = {}
_installed = False


def _hook(event: str, args: tuple) -> None:
    if event == "open" and _gates and isinstance(args[0], (str, bytes)):
        gate = _gates.get(os.path.basename(os.fsdecode(args[0])))
        if gate is not None:
            gate.wait()


@contextmanager
def stalled_reads(*names: str) -> Iterator[None]:
    """While inside, opening a file called one of `names` blocks; leaving releases the blocked reads."""
    global _installed
    if not _installed:  # an audit hook cannot be removed: one, idle while nothing is registered
        sys.addaudithook(_hook)
        _installed = True
    gate = threading.Event()
    for name in names:
        _gates[name] = gate
    try:
        yield
    finally:
        for name in names:
            _gates.pop(name, None)
        gate.set()
