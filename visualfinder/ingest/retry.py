"""Skipped files come in two kinds, and this is when each is tried again.

- *permanent*: the bytes are not a readable image (decode error, decompression bomb, unsupported
  format). Only a change of the file (size, mtime) can cure that, so it waits for one.
- *transient*: the bytes could not be read now (permission denied, I/O error, a stale handle,
  too many open files, the per-file time limit, an unexpected internal error). It is tried again
  on every later scan (and by a running watcher when its backoff ends), with a capped backoff
  for a file that keeps failing; a ctime change
  (`chmod`, `chown`, a restored file) makes it due at once, so a permission fix is noticed.

`visualfinder index --retry-skipped` (and the app's "Retry skipped") tries every skipped file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI's --help imports this module: no numpy for a type
    from visualfinder.catalog.records import StatRow

PERMANENT = "permanent"
TRANSIENT = "transient"
KINDS = (PERMANENT, TRANSIENT)

# After the first failure the next scan tries again; from the second on, wait 1 min, 2, 4, ...
# up to 1 h between tries: a stalled share costs one time limit per file per hour, not per scan.
BACKOFF_BASE_S = 60.0
BACKOFF_CAP_S = 3600.0


def kind_of(transient: bool) -> str:
    return TRANSIENT if transient else PERMANENT


def next_attempt(row: StatRow | None, kind: str) -> int:
    """How many times in a row this file has now failed with a failure of this kind."""
    if row is not None and row.status == "error" and row.error_kind == kind:
        return row.attempts + 1
    return 1


def next_retry_at(kind: str, attempts: int, now: float) -> float | None:
    """When a scan may try a skipped file again (wall clock), None: only when it changes."""
    if kind != TRANSIENT:
        return None
    if attempts <= 1:
        return now
    return now + min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (attempts - 2))


def due_for_retry(row: StatRow, ctime_ns: int, now: float) -> bool:
    """Whether a skipped file whose size and mtime did not change is tried again by this scan."""
    if row.status != "error" or row.error_kind != TRANSIENT:
        return False
    if ctime_ns and row.ctime_ns and ctime_ns != row.ctime_ns:
        return True  # its permissions or owner changed: the cause may be gone
    return row.retry_at is None or row.retry_at <= now
