"""Re-scan of an unchanged catalog: stat only, never a file read. Targets: 10k files < 1 s,
100k files < 5 s. Baseline in the same run: a bare os.scandir walk + stat of the same tree
(the floor any stat-based rescan pays).

    pytest tests/benchmarks/test_rescan_speed.py -s
    VF_BENCH_FILES=10000,100000 pytest tests/benchmarks/test_rescan_speed.py -s

The catalog rows are written directly (as the pipeline would have written them for these very
files: same path, size and mtime, an embedding from the library's model), so the benchmark
measures the rescan, not a first index of 100k files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from report import env_list, machine, spread, table

from visualfinder.catalog.store import CatalogChanges, ImageWrite
from visualfinder.config import Settings
from visualfinder.library.facade import open_library

SIZES = [int(v) for v in env_list("VF_BENCH_FILES", "10000,100000")]
ROUNDS = 5
PER_FOLDER = 500


def _tree(root: Path, count: int) -> list[Path]:
    """`count` tiny JPEG-named files in folders of PER_FOLDER (the scanner only stats them)."""
    paths = []
    for i in range(count):
        folder = root / f"set{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{i:06d}.jpg"
        path.write_bytes(b"\xff\xd8\xff" + i.to_bytes(4, "little"))
        paths.append(path)
    return paths


def _walk(root: Path) -> int:
    count, stack = 0, [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    entry.stat()
                    count += 1
    return count


@pytest.mark.timeout(3600)
def test_rescan_of_an_unchanged_catalog(tmp_path):
    print(f"\nrescan: {machine()}", flush=True)
    rows = []
    for count in SIZES:
        root = tmp_path / f"catalog-{count}"
        started = time.perf_counter()
        paths = _tree(root, count)
        settings = Settings.load(tmp_path / f"data-{count}", model="vf-tiny", pretrained="none", device="cpu")
        library = open_library(settings)
        try:
            folder = library.add_folders([root])[0]
            vector = np.ones(library.embedder.dim, dtype=np.float32) / np.sqrt(library.embedder.dim)
            for start in range(0, count, 10_000):
                changes = CatalogChanges()
                for path in paths[start : start + 10_000]:
                    st = path.stat()
                    changes.inserts.append(ImageWrite(str(path), folder.id, st.st_size, st.st_mtime_ns,
                                                      content_hash=path.name, width=1, height=1, format="JPEG",
                                                      embedding=vector, model_key=library.model_key))  # fmt: skip
                library.catalog.apply(changes)
            library.live.sync()
            print(
                f"  {count:,} files and catalog rows ready in {time.perf_counter() - started:.0f}s",
                flush=True,
            )
            rescans, walks, cpu = [], [], []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                walked = _walk(root)
                walks.append(time.perf_counter() - start)
                start, cpu_start = time.perf_counter(), time.process_time()
                report = library.index()
                rescans.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
                assert walked == count and report.unchanged == count and not report.changed, report.summary()
            rescans, walks = np.array(rescans), np.array(walks)
            target = 1.0 if count <= 10_000 else 5.0 * count / 100_000
            rows.append([f"{count:,}", spread(rescans), spread(cpu), spread(walks), spread(rescans / walks),
                         f"< {target:g} s", "yes" if np.median(rescans) < target else "NO"])  # fmt: skip
        finally:
            library.close()
    table(f"Re-scan of an unchanged catalog (seconds, median (min-max) of {ROUNDS})",
          ["files", "Library.index() wall", "its CPU time", "bare scandir+stat", "ratio", "target", "met"], rows)  # fmt: skip
