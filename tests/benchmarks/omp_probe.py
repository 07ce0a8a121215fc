"""One measurement of tests/benchmarks/test_omp_wait.py, in a fresh process (OMP_WAIT_POLICY is
read when torch is first imported, so each policy needs its own process).

    python omp_probe.py thread|main|watcher DATA_DIR FOLDER   -> index FOLDER that way
    python omp_probe.py embed MODEL BATCHES                   -> the model alone, batches of 16

Prints one JSON line: wall and CPU seconds, and the policy the process ran with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def _index(mode: str, data_dir: Path, folder: Path) -> dict:
    from visualfinder.config import Settings
    from visualfinder.library.facade import open_library

    library = open_library(
        Settings.load(data_dir, model="vf-tiny", pretrained="none", device="cpu", backend="torch")
    )
    library.embedder.load()
    count = len(os.listdir(folder))
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "main":  # as the CLI runs it
        library.index([folder])
    elif mode == "thread":  # as the app's job queue runs it
        worker = threading.Thread(target=lambda: library.index([folder]))
        worker.start()
        worker.join()
    else:  # the watcher: files copied into a watched folder by another process
        from visualfinder.ingest.watcher import Watcher

        drop = data_dir.parent / f"{data_dir.name}-drop"
        shutil.rmtree(drop, ignore_errors=True)
        drop.mkdir()
        library.index([drop], watched=True)
        watcher = Watcher(library)
        watcher.start()
        watcher.wait_idle(60)
        start, cpu = time.perf_counter(), time.process_time()
        subprocess.run(["cp", "-r", f"{folder}/.", str(drop)], check=True)
        while len(library.vector_index) < count:
            time.sleep(0.01)
        watcher.stop()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(library.vector_index) == count
    library.close()
    return {"wall": wall, "cpu": cpu, "files": count}


def _embed(model: str, batches: int) -> dict:
    import numpy as np
    import torch

    from visualfinder.models.embedder import Embedder

    embedder = Embedder(model, "none", "cpu", backend="torch").load()
    rng = np.random.default_rng(0)
    tensors = [
        torch.from_numpy(rng.standard_normal((3, embedder.image_size, embedder.image_size), dtype=np.float32))
        for _ in range(16)
    ]
    embedder.embed_batch(tensors)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        embedder.embed_batch(tensors)
    return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "images": 16 * batches}


if __name__ == "__main__":
    mode = sys.argv[1]
    out = (
        _embed(sys.argv[2], int(sys.argv[3]))
        if mode == "embed"
        else _index(mode, Path(sys.argv[2]), Path(sys.argv[3]))
    )
    out["policy"] = os.environ.get("OMP_WAIT_POLICY")
    print(json.dumps(out))
