"""What every CLI command shares: the command table, opening the library, progress bars, Ctrl+C,
usage errors and log output. The command modules import this; nothing here imports them."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from visualfinder.config import Settings
from visualfinder.errors import VisualFinderError
from visualfinder.jobs import CancelToken, Progress, ProgressCallback

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}

# Options given on this command line that must agree with an existing library (set by main).
explicit: dict[str, str | None] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register a command function under its sub-command name."""

    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


@contextmanager
def open_cli_library(settings: Settings, one_shot: bool = False):
    """The library for one command, opened with a progress bar (a rebuild shows) and closed after.
    `one_shot`: the command embeds one query and exits (see `open_library`)."""
    from visualfinder.library.facade import open_library  # not needed by --help

    with progress_bar() as progress:
        library = open_library(settings, progress, one_shot=one_shot)
    try:
        metric = explicit.get("metric")
        if metric and metric != library.metric:
            raise usage(
                f"this library uses the {library.metric} metric; --metric only applies when a library is "
                f"created (switch with `visualfinder set-metric {metric}`)"
            )
        yield library
    finally:
        library.close()


def usage(message: str) -> VisualFinderError:
    """An error in how the command was called (exit code 2, as argparse's own)."""
    error = VisualFinderError(message)
    error.exit_code = 2
    return error


@contextmanager
def progress_bar() -> Iterator[ProgressCallback]:
    """A ProgressCallback drawing one tqdm bar per phase on stderr (images/s and ETA)."""
    from tqdm import tqdm

    state: dict = {"bar": None, "phase": None}

    def report(p: Progress) -> None:
        bar = state["bar"]
        if p.phase != state["phase"]:
            if bar is not None:
                bar.close()
            unit = "img" if p.phase in ("indexing", "removing") else "item"
            bar = tqdm(total=p.total or None, desc=p.phase, unit=unit, file=sys.stderr, leave=False,
                       dynamic_ncols=True, disable=None)  # fmt: skip
            state["bar"], state["phase"] = bar, p.phase
        if p.total and bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        bar.refresh()

    try:
        yield report
    finally:
        if state["bar"] is not None:
            state["bar"].close()


@contextmanager
def cancel_on_sigint(cancel: CancelToken):
    """First Ctrl+C: finish the current batch and stop cleanly. Second: stop now."""

    def handler(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\nstopping after the current batch (Ctrl+C again to abort)...", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _OwnLogsFilter(logging.Filter):
    """Without -v, hide third-party chatter (open_clip warns about random weights on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("visualfinder") or record.levelno >= logging.ERROR


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("visualfinder: %(levelname)s: %(message)s"))
    if verbosity < 2:
        handler.addFilter(_OwnLogsFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def quiet_unencodable_output() -> None:
    """File names need not be valid UTF-8: print them as the OS gave them instead of crashing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="surrogateescape")
        except (AttributeError, ValueError):  # pragma: no cover - replaced streams
            pass
