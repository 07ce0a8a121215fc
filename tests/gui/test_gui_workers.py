"""Job queues: one job at a time, newest search wins, errors as messages, progress throttled, clean stop."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QThreadPool

from visualfinder.errors import QueryError
from visualfinder.gui.session import SharedLock
from visualfinder.gui.workers import Job, JobQueue, run_in_pool
from visualfinder.jobs import Progress


@pytest.fixture
def queue(qtbot):
    q = JobQueue("test")
    yield q
    assert q.shutdown(timeout=5)


def test_jobs_on_one_queue_run_one_at_a_time_in_order(qtbot, queue):
    log: list[tuple[str, int]] = []
    running = []

    def work(n):
        def run(ctx):
            running.append(n)
            assert len(running) == 1, "two jobs ran at once"
            log.append(("start", n))
            time.sleep(0.01)
            log.append(("end", n))
            running.remove(n)
            return n * n

        return run

    jobs = [queue.call(f"job {n}", work(n)) for n in range(5)]
    qtbot.waitUntil(lambda: all(j.done for j in jobs))

    assert log == [(what, n) for n in range(5) for what in ("start", "end")]
    assert [j.result for j in jobs] == [0, 1, 4, 9, 16]
    assert not queue.busy


def test_a_newer_job_with_the_same_key_cancels_the_older_one(qtbot, queue):
    started = threading.Event()

    def slow(ctx):
        started.set()
        while not ctx.cancel.cancelled:
            time.sleep(0.005)
        return "stale"

    first = queue.submit(Job("first search", slow, key="search"))
    started.wait(5)
    second = queue.submit(Job("second search", lambda ctx: "fresh", key="search"))
    with qtbot.waitSignal(first.cancelled):
        pass
    qtbot.waitUntil(lambda: second.done)

    assert first.state == "cancelled" and first.result is None  # its answer is never shown
    assert second.state == "succeeded" and second.result == "fresh"


def test_errors_come_back_as_one_line_messages(qtbot, queue):
    def user_error(ctx):
        raise QueryError("the text query is empty")

    def bug(ctx):
        raise RuntimeError("boom")

    with qtbot.waitSignal(queue.call("Searching", user_error).failed) as expected:
        pass
    with qtbot.waitSignal(queue.call("Exporting", bug).failed) as unexpected:
        pass

    assert expected.args == ["the text query is empty"]
    assert unexpected.args == ["Exporting failed unexpectedly (RuntimeError: boom)"]


def test_progress_reaches_the_gui_throttled_but_always_with_its_end(qtbot, queue):
    seen: list[Progress] = []

    def chatty(ctx):
        for i in range(1, 20_001):
            ctx.progress(Progress("indexing", i, 20_000))

    job = queue.call("Indexing", chatty)
    job.progressed.connect(seen.append)
    qtbot.waitUntil(lambda: job.done)

    assert 1 <= len(seen) < 200
    assert seen[-1] == Progress("indexing", 20_000, 20_000)


def test_shutdown_cancels_running_and_waiting_jobs_and_joins_the_thread(qtbot):
    queue = JobQueue("stopping")
    started = threading.Event()

    def until_cancelled(ctx):
        started.set()
        while True:
            ctx.cancel.raise_if_cancelled()
            time.sleep(0.005)

    running = queue.call("long", until_cancelled)
    waiting = queue.call("next", lambda ctx: "never")
    started.wait(5)

    assert queue.shutdown(timeout=5)
    assert not queue._thread.is_alive()
    qtbot.waitUntil(lambda: running.done and waiting.done)
    assert running.state == waiting.state == "cancelled"
    with pytest.raises(RuntimeError):
        queue.call("late", lambda ctx: None)


def test_pool_tasks_report_back_on_the_gui_thread(qtbot):
    pool = QThreadPool()
    seen = {}

    def done(value):
        seen["value"] = value
        seen["thread"] = threading.current_thread()

    run_in_pool(pool, lambda: threading.current_thread().name, done)
    qtbot.waitUntil(lambda: "value" in seen)
    pool.waitForDone()

    assert seen["thread"] is threading.main_thread()
    assert seen["value"] != threading.main_thread().name


def test_exclusive_holder_waits_for_shared_holders():
    lock = SharedLock()
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def reader():
        with lock.shared():
            order.append("read")
            inside.set()
            release.wait(5)
        order.append("read done")

    def writer():
        inside.wait(5)
        with lock.exclusive():
            order.append("write")

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    inside.wait(5)
    time.sleep(0.05)
    assert order == ["read"]  # the writer is still waiting
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["read", "read done", "write"]


def test_a_job_left_running_at_shutdown_reports_to_nobody(qtbot):
    queue = JobQueue("left behind")
    release = threading.Event()
    heard = []
    job = queue.call("download", lambda ctx: release.wait(5))
    job.finished.connect(lambda: heard.append("finished"))
    qtbot.waitUntil(lambda: job.state == "running")

    assert not queue.shutdown(timeout=0.05)  # it cannot be interrupted: left behind
    assert queue.alive
    with qtbot.assertNotEmitted(job.finished, wait=100):
        release.set()
        qtbot.waitUntil(lambda: not queue.alive)

    assert heard == []
    assert job.state == "cancelled"
