"""The reliability suite: its fast part runs with `pytest`; VF_RELIABILITY_LONG=1 runs the long part.

Tests marked `reliability_long` run only then; the others scale their trials and cases with it
(see rel_harness.scaled). Every random choice derives from VF_RELIABILITY_SEED.
"""

from __future__ import annotations

import pytest
from rel_harness import LONG, SEED


def pytest_collection_modifyitems(config, items):
    if LONG:
        # Hundreds of kill trials on a shared machine outlast the suite's 300 s per test; a
        # timeout firing inside usearch surfaces as "Operation has been terminated".
        for item in items:
            item.add_marker(pytest.mark.timeout(3600))
        return
    skip = pytest.mark.skip(reason="long reliability run: set VF_RELIABILITY_LONG=1")
    for item in items:
        if "reliability_long" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"reliability suite: {'long' if LONG else 'fast'} run, seed {SEED}"
