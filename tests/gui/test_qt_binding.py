"""The Qt binding itself: a release that leaks references makes every Qt app abort after a while."""

from __future__ import annotations

import sys

from PySide6.QtCore import QCoreApplication, QObject, Signal


class Emitter(QObject):
    changed = Signal(object)


def test_emitting_signals_and_processing_events_keep_reference_counts(qapp):
    # PySide6 6.12.0 on Python < 3.12 drops a reference to True on every emit() and to None on
    # every processEvents(); the process then dies with "deallocating True/None" (pyproject pins it out).
    emitter = Emitter()
    received = []
    emitter.changed.connect(received.append)
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)

    for i in range(200):
        emitter.changed.emit(i)
        QCoreApplication.processEvents()

    assert len(received) == 200
    assert abs(sys.getrefcount(True) - true_before) < 20
    assert abs(sys.getrefcount(None) - none_before) < 20
