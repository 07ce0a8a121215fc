"""Helpers for tests that run visualfinder in a real subprocess."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import visualfinder

SOURCE_ROOT = str(Path(visualfinder.__file__).resolve().parent.parent)


def subprocess_env(*extra_paths: str, **overrides: str) -> dict[str, str]:
    """This environment, with the checkout under test (and `extra_paths`) first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SOURCE_ROOT, *extra_paths])
    env.update(overrides)
    return env


def unprivileged_prefix() -> list[str]:
    """A command prefix under which file permissions apply: root reads anything, so as root the
    child runs without the DAC capabilities (skips the test where that cannot be done)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]
