"""Shared fixtures: every test gets its own data dir and the tiny seeded model (vf-tiny)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from procutil import subprocess_env

from visualfinder.config import Settings
from visualfinder.library.facade import open_library

# The torch backend: with "auto" every test's fresh data dir would export vf-tiny to ONNX
# first (seconds each). tests/test_backends.py covers the ONNX backend and the auto choice.
TINY_ENV = {"VISUALFINDER_MODEL": "vf-tiny", "VISUALFINDER_PRETRAINED": "none", "VISUALFINDER_DEVICE": "cpu",
            "VISUALFINDER_BACKEND": "torch"}  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_library_env(tmp_path, monkeypatch):
    """A fresh data dir per test; the tiny random-init model so tests need no downloads."""
    data_dir = tmp_path / "vf-data"
    monkeypatch.setenv("VISUALFINDER_DATA_DIR", str(data_dir))
    for key, value in TINY_ENV.items():
        monkeypatch.setenv(key, value)
    return data_dir


@pytest.fixture
def fresh_process(monkeypatch):
    """Forget loaded models and ONNX sessions, as a new process would not have them."""
    from visualfinder.models import embedder as embedder_module

    monkeypatch.setattr(embedder_module, "_engines", {})
    monkeypatch.setattr(embedder_module, "_loaded", {})


@pytest.fixture
def data_dir(isolated_library_env) -> Path:
    return isolated_library_env


@pytest.fixture
def settings(data_dir) -> Settings:
    return Settings.load()


@pytest.fixture
def library(settings):
    lib = open_library(settings)
    yield lib
    lib.close()


@pytest.fixture
def reopen(settings):
    """Open the library again, as a new process would; closed at teardown."""
    opened = []

    def _open(**changes):
        lib = open_library(settings.replace(**changes) if changes else settings)
        opened.append(lib)
        return lib

    yield _open
    for lib in opened:
        lib.close()


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 240, **kwargs
) -> subprocess.CompletedProcess:
    """Run `python -m visualfinder ARGS` in a real subprocess (the end-to-end entry point)."""
    full_env = subprocess_env(**(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "visualfinder", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, **kwargs,
    )  # fmt: skip


@pytest.fixture
def cli():
    return run_cli
