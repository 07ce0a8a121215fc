"""Run in a fresh process by test_tree_comparison, with PYTHONPATH naming one checkout.

Indexes a folder into a new library, rescans it, then times image, text and similar queries
through `Library.search`. Prints one JSON object. Works on checkouts from before the
`library/` layout (facade in `visualfinder.service`) and after it.

Usage: python tree_probe.py IMAGES_DIR DATA_DIR MODEL QUERIES
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from visualfinder.config import Settings

try:  # the layout since issue 15
    from visualfinder.library.facade import open_library
    from visualfinder.search.request import QueryTerm, SearchRequest
except ImportError:  # the flat layout before it
    from visualfinder.service import QueryTerm, SearchRequest, open_library


def main() -> None:
    images, data_dir, model, n_queries = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = Settings.load(data_dir, model=model, pretrained="none", device="cpu")
    started = time.perf_counter()
    library = open_library(settings)
    library.embedder.load()
    opened = time.perf_counter() - started
    cpu = time.process_time()
    started = time.perf_counter()
    report = library.index([images])
    index_s, index_cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    library.index()
    rescan_s = time.perf_counter() - started
    files = sorted(images.glob("*.jpg"))[:n_queries]
    kinds = {
        "image": [QueryTerm("image", f) for f in files],
        "text": [QueryTerm("text", f"a product photo number {i}") for i in range(len(files))],
        "similar": [QueryTerm("similar", f) for f in files],
    }
    latency = {}
    for kind, terms in kinds.items():
        times = []
        for term in terms:
            start = time.perf_counter()
            library.search(SearchRequest([term], k=10))
            times.append(time.perf_counter() - start)
        latency[kind] = sorted(times)[len(times) // 2]
    library.close()
    print(json.dumps({"open_s": opened, "index_s": index_s, "index_cpu_s": index_cpu, "added": report.added,
                      "rescan_s": rescan_s, "p50_s": latency}))  # fmt: skip


if __name__ == "__main__":
    main()
