"""Small helpers shared by the benchmarks: timing statistics, memory, and printing tables."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import numpy as np


def env_int(name: str, default: int) -> int:
    """A benchmark size from the environment (sizes stay runnable on demand, in minutes)."""
    return int(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def timed(fn: Callable[[], object], repeat: int) -> tuple[np.ndarray, object]:
    """Run fn `repeat` times; (seconds per run, last result)."""
    out = None
    times = np.empty(repeat)
    for i in range(repeat):
        start = time.perf_counter()
        out = fn()
        times[i] = time.perf_counter() - start
    return times, out


def ms(times: np.ndarray, q: float = 50) -> float:
    return float(np.percentile(times, q) * 1000)


def spread(values: list[float] | np.ndarray) -> str:
    """'median (min-max)' of repeated measurements, so readers see how noisy the host was."""
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):.2f} ({v.min():.2f}-{v.max():.2f})"


def rss_bytes() -> dict[str, int]:
    """Resident memory of this process, split into anonymous and file-backed (mapped) pages."""
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:  # not Linux: fall back to the peak from getrusage
        import resource

        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f} at start"


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (pasteable into the README), printed and returned."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"\n### {title}\n"]
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
