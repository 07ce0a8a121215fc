"""The duplicates window on a 16k-image library: time to first groups against the CLI's
`visualfinder duplicates`, and how long the GUI thread waits meanwhile.

Run: QT_QPA_PLATFORM=offscreen pytest tests/benchmarks/test_duplicates_view_speed.py -s
(VF_BENCH_DUP_IMAGES sets the size). Figures are printed next to the CLI measured in the same run.

The library is synthetic (tests/benchmarks/synthetic.py's vector mixture, real catalog rows,
no files on disk): every tenth image is a byte-identical copy of the one before it (tier 1) and
every tenth-plus-one a near copy (cosine ~0.99, tier 3: without files there is no perceptual
check, so no tier 2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from report import env_int
from synthetic import CATALOG_ROOT, centres_for, mixture

from visualfinder.catalog.store import Catalog, CatalogChanges, ImageWrite
from visualfinder.config import Settings
from visualfinder.library.facade import open_library

N = env_int("VF_BENCH_DUP_IMAGES", 16_000)
HERE = Path(__file__).parent


def _settings(data_dir: Path) -> Settings:
    return Settings.load(data_dir, model="vf-tiny", pretrained="none", device="cpu", backend="torch")


def build_library(data_dir: Path) -> int:
    """N embedded rows with planted duplicates; returns the number of planted pairs."""
    with open_library(_settings(data_dir)) as library:  # records the model, creates the schema
        key, dim = library.model_key, library.vector_index.spec.ndim
    catalog = Catalog(data_dir / "catalog.db")
    rng = np.random.default_rng(7)
    planted = 0
    try:
        root = catalog.add_folder(CATALOG_ROOT)
        vectors = np.concatenate(list(mixture(N, dim, seed=3, centres=centres_for(N))))
        for i in range(1, N):
            if i % 10 == 0:
                vectors[i] = vectors[i - 1]
                planted += 1
            elif i % 10 == 1 and i > 1:
                near = vectors[i - 1] + rng.standard_normal(dim).astype(np.float32) * (0.1 / np.sqrt(dim))
                vectors[i] = near / np.linalg.norm(near)
                planted += 1
        changes = CatalogChanges()
        for i, vector in enumerate(vectors):
            digest = f"{i - 1 if i % 10 == 0 and i else i:032x}"
            changes.inserts.append(ImageWrite(
                f"{CATALOG_ROOT}/d{i % 100}/img_{i:07d}.jpg", root.id, 1000 + i, 1_700_000_000_000_000_000 + i,
                content_hash=digest, width=2000, height=1500, format="JPEG", embedding=vector.astype(np.float16),
                model_key=key,
            ))  # fmt: skip
        catalog.apply(changes)
    finally:
        catalog.close()
    with open_library(_settings(data_dir)) as library:  # builds and saves the index once
        assert len(library.vector_index) == N
    return planted


def cli_duplicates(data_dir: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent), VISUALFINDER_DATA_DIR=str(data_dir),
               VISUALFINDER_MODEL="vf-tiny", VISUALFINDER_PRETRAINED="none", VISUALFINDER_DEVICE="cpu",
               VISUALFINDER_BACKEND="torch")  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "visualfinder", "duplicates", "--json"], capture_output=True,
                         text=True, env=env, timeout=1800)  # fmt: skip
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stderr[-2000:]
    return seconds


def test_the_duplicates_window_shows_groups_in_the_clis_time(qapp, qtbot, tmp_path):
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer

    from visualfinder.gui.main_window import MainWindow
    from visualfinder.gui.session import LibrarySession

    data_dir = tmp_path / "library"
    started = time.perf_counter()
    planted = build_library(data_dir)
    print(
        f"\nsynthetic library: {N:,} images, {planted:,} planted copies, built in {time.perf_counter() - started:.1f} s"
    )

    with open_library(_settings(data_dir)) as library:
        start = time.perf_counter()
        report = library.duplicates.find()
        core = time.perf_counter() - start
    groups = len(report.groups)
    cli = min(cli_duplicates(data_dir) for _ in range(2))

    session = LibrarySession(_settings(data_dir))
    session.watch = False
    window = MainWindow(session, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    window.show()
    with qtbot.waitSignal(session.snapshotChanged, timeout=600_000):
        session.open()
    qtbot.waitUntil(lambda: not session.background.busy, timeout=600_000)  # the model, loaded once

    gaps: list[float] = []
    tick = QElapsedTimer()
    timer = QTimer(interval=5)

    def on_tick() -> None:
        gaps.append(tick.restart())

    timer.timeout.connect(on_tick)
    tick.start()
    timer.start()
    start = time.perf_counter()
    window.duplicates_action.trigger()
    view = window.review_actions.duplicates_window
    qtbot.waitUntil(lambda: view.model.rowCount() > 0 and bool(view.cards), timeout=600_000)
    first_groups = time.perf_counter() - start
    timer.stop()
    shown_rows = view.model.rowCount()
    # Scrolling the whole list: pages are fetched as the end comes into view.
    start = time.perf_counter()
    for _ in range(10):
        view.list.scrollToBottom()
        qapp.processEvents()
    scroll = time.perf_counter() - start
    rows_after = view.model.rowCount()
    window.close()
    qtbot.waitUntil(lambda: session.state == "shut", timeout=600_000)

    print(
        f"groups: {groups:,} ({', '.join(f'{t}: {len(report.tier(t))}' for t in ('identical', 'same_picture', 'similar'))})"
    )
    print(f"{'':36}{'seconds':>9}{'vs CLI':>8}")
    print(f"{'CLI `duplicates --json` (process)':36}{cli:9.2f}{1.0:8.2f}")
    print(f"{'Library.duplicates.find (in process)':36}{core:9.2f}{core / cli:8.2f}")
    print(f"{'window: first groups shown':36}{first_groups:9.2f}{first_groups / cli:8.2f}")
    print(f"GUI thread: longest wait between 5 ms ticks {max(gaps):.0f} ms over {len(gaps)} ticks "
          f"(median {np.median(gaps):.0f} ms)")  # fmt: skip
    print(f"list: {shown_rows} rows at first, {rows_after} after 10 scrolls to the end ({scroll * 1000:.0f} ms); "
          f"{view.model.total:,} groups held")  # fmt: skip
    assert groups > 0 and first_groups > 0
