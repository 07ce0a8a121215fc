"""Run in a fresh process by test_search_scale: open a library, time start-up and first searches.

Prints one JSON object. Usage: python startup_probe.py DATA_DIR DTYPE VIEW(0|1) QUERIES N
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from report import rss_bytes
from synthetic import centres_for, mixture

from visualfinder.config import Settings
from visualfinder.library.facade import open_library


def main() -> None:
    data_dir, dtype, view, n_queries = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
    n = int(sys.argv[5])
    queries = next(mixture(n_queries, seed=3, centres=centres_for(n)))
    before = rss_bytes()
    start = time.perf_counter()
    settings = Settings.load(data_dir, model="ViT-B-32-256", pretrained="none", device="cpu",
                             index_dtype=dtype, index_memory_map=view)  # fmt: skip
    library = open_library(settings)
    opened = time.perf_counter() - start
    after_open = rss_bytes()
    start = time.perf_counter()
    library.live.engine.planner.search(queries[0], 10)
    first = time.perf_counter() - start
    times = []
    for q in queries[1:]:
        start = time.perf_counter()
        library.live.engine.planner.search(q, 10)
        times.append(time.perf_counter() - start)
    after = rss_bytes()
    print(json.dumps({
        "health": library.index_health, "open_s": opened, "first_query_ms": first * 1000,
        "p50_ms": float(np.median(times) * 1000), "p99_ms": float(np.percentile(times, 99) * 1000),
        "rss_before": before, "rss_open": after_open, "rss_after": after, "is_view": library.vector_index.is_view,
    }))  # fmt: skip
    library.close()


if __name__ == "__main__":
    main()
