"""GUI benchmarks: scrolling a 10k-result grid, and how long the GUI thread waits while indexing.

Run: QT_QPA_PLATFORM=offscreen pytest tests/benchmarks/test_gui_benchmarks.py -s
Each prints its figures next to a baseline measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from imagegen import write_image
from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication

from visualfinder.catalog.store import ImageRecord
from visualfinder.gui.main_window import MainWindow
from visualfinder.gui.results_model import ResultsModel
from visualfinder.gui.results_view import ResultsView
from visualfinder.gui.session import LibrarySession
from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.search.planner import SearchResult

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def fake_results(count: int, thumbs: list[Path]) -> list[SearchResult]:
    """Distinct results whose thumbnails are real JPEG files (shared, as copies share one)."""
    results = []
    for i in range(count):
        thumb = str(thumbs[i % len(thumbs)])
        record = ImageRecord(
            id=i + 1, path=f"/catalog/item_{i:06d}.jpg", folder_id=1, size=1000, mtime_ns=i * 10**9,
            width=256, height=192, format="JPEG", thumb_path=thumb, content_hash=None,
            title=f"Product {i}" if i % 3 else None, price=float(i % 97) if i % 2 else None,
        )  # fmt: skip
        results.append(SearchResult(i + 1, i + 1, 1.0 - i / (count + 1), i / (count + 1), record))
    return results


def paint_pages(qapp, view: ResultsView, pages: int | None, settle_s: float = 0.0) -> list[float]:
    """Scroll page by page from the top (all pages if None); each page's paint time in ms.

    `settle_s`: time given to the event loop after each page (thumbnails arriving), as a user's
    scroll would; 0 is a flick as fast as the view can paint."""
    bar = view.verticalScrollBar()
    bar.setValue(0)
    frames = []
    while True:
        timer = QElapsedTimer()
        timer.start()
        view.viewport().repaint()
        frames.append(timer.nsecsElapsed() / 1e6)
        end = time.perf_counter() + settle_s
        qapp.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        while time.perf_counter() < end:
            qapp.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        if bar.value() >= bar.maximum() or (pages is not None and len(frames) >= pages):
            break
        bar.setValue(bar.value() + bar.pageStep())
    return frames


def stats(frames: list[float]) -> str:
    ordered = sorted(frames)
    return (f"mean {statistics.fmean(frames):6.2f} ms, p95 {ordered[int(0.95 * (len(ordered) - 1))]:6.2f} ms, "
            f"max {ordered[-1]:6.2f} ms over {len(frames)} pages")  # fmt: skip


def open_grid(qapp, count: int, thumbs: list[Path]) -> tuple[ResultsView, ThumbnailLoader, dict[str, float]]:
    loader = ThumbnailLoader(160)
    model = ResultsModel(loader)
    view = ResultsView(160)
    view.setModel(model)
    view.resize(1200, 800)
    view.show()
    results = fake_results(count, thumbs)
    started = time.perf_counter()
    model.set_results(results)
    qapp.processEvents()
    figures = {"set_ms": (time.perf_counter() - started) * 1e3}
    started = time.perf_counter()
    model.set_sort("name", False)
    qapp.processEvents()
    figures["sort_ms"] = (time.perf_counter() - started) * 1e3
    model.set_sort("similarity", True)
    # Batched layout: wait until every row is placed, so a scroll can reach the end.
    rows = -(-count // max(1, view.viewport().width() // view.gridSize().width()))
    expected = rows * view.gridSize().height() - view.viewport().height()
    deadline = time.perf_counter() + 60
    while (
        view.verticalScrollBar().maximum() < expected - view.gridSize().height()
        and time.perf_counter() < deadline
    ):
        qapp.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
    return view, loader, figures


def test_scrolling_ten_thousand_results_costs_what_a_hundred_do(qapp, tmp_path):
    thumbs = [write_image(tmp_path / f"thumb_{i}.jpg", i, size=(256, 192)) for i in range(64)]
    measured = {}
    for count in (100, 10_000):
        view, loader, figures = open_grid(qapp, count, thumbs)
        figures["cold"] = paint_pages(qapp, view, 5, settle_s=0.1)  # thumbnails load as pages appear
        figures["warm"] = paint_pages(qapp, view, 5)  # the same pages again, from the cache
        if count > 100:
            figures["flick"] = paint_pages(qapp, view, None)  # the whole list, as fast as it paints
        loader.shutdown()
        view.close()
        measured[count] = figures
    print()
    for count, f in measured.items():
        print(f"{count:>6,} results: set {f['set_ms']:6.1f} ms, sort by name {f['sort_ms']:6.1f} ms")
        print(f"{'':>15} first 5 pages (loading): {stats(f['cold'])}")
        print(f"{'':>15} same 5 pages (cached):   {stats(f['warm'])}")
    print(f"{'':>15} whole list, flicked:     {stats(measured[10_000]['flick'])}")
    ratio = statistics.fmean(measured[10_000]["warm"]) / statistics.fmean(measured[100]["warm"])
    print(f"paint per page, 10,000 vs 100 results: x{ratio:.2f}")
    assert ratio < 2.0  # the cost of a page does not grow with the number of results


@pytest.mark.parametrize("images", [240])
def test_gui_thread_latency_while_indexing(qapp, qtbot, settings, tmp_path, images):
    """The longest the GUI thread waited to run a 10 ms timer: idle, then while a folder is indexed."""
    folder = tmp_path / "catalog"
    for i in range(images):
        write_image(folder / f"item_{i:04d}.jpg", i, size=(640, 480))
    session = LibrarySession(settings)
    window = MainWindow(session, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    window.show()
    with qtbot.waitSignal(session.snapshotChanged, timeout=60_000):
        session.open()
    qtbot.waitUntil(lambda: not session.background.busy, timeout=60_000)  # the model is loaded

    def gaps_while(done, limit_s: float = 120.0) -> list[float]:
        gaps, last = [], time.perf_counter()

        def tick():
            nonlocal last
            now = time.perf_counter()
            gaps.append((now - last) * 1e3)
            last = now

        timer = QTimer(interval=10)
        timer.timeout.connect(tick)
        timer.start()
        end = time.perf_counter() + limit_s
        while not done() and time.perf_counter() < end:
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        timer.stop()
        return gaps

    idle_until = time.perf_counter() + 2.0
    idle = gaps_while(lambda: time.perf_counter() > idle_until)
    (job,) = window.library_actions.add_folders([str(folder)])
    busy = gaps_while(lambda: job.done)
    assert job.state == "succeeded"
    print()
    for name, gaps in (("idle", idle), (f"indexing {images} images", busy)):
        gaps = sorted(gaps)
        print(f"{name:>22}: timer gap p50 {gaps[len(gaps) // 2]:5.1f} ms, p99 {gaps[int(0.99 * (len(gaps) - 1))]:5.1f} ms, "
              f"max {gaps[-1]:6.1f} ms over {len(gaps)} ticks")  # fmt: skip
    window.close()
    qtbot.waitUntil(lambda: session.state == "shut", timeout=60_000)
