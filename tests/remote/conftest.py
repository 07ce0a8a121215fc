"""Fixtures for the OpenSearch tests: a real osmem server (the osmem-server pytest plugin gives
each test its own clone), a real HTTP proxy in front of it, and a file keyring."""

from __future__ import annotations

import os
from pathlib import Path

import keyring
import pytest
from opensearchpy import OpenSearch
from remote_helpers import FAST_REMOTE, ClusterProxy, FileKeyring

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def test_keyring(tmp_path, monkeypatch):
    """Every test gets an empty keyring in a file, here and in the CLI subprocesses it starts."""
    monkeypatch.setenv("VF_TEST_KEYRING_FILE", str(tmp_path / "keyring.json"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "remote_helpers.FileKeyring")
    monkeypatch.delenv("VISUALFINDER_REMOTE_PASSWORD", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    yield tmp_path / "keyring.json"
    keyring.set_keyring(previous)


@pytest.fixture
def proxy(osmem_clone):
    p = ClusterProxy(osmem_clone.url)
    yield p
    p.close()


@pytest.fixture
def os_client(osmem_clone) -> OpenSearch:
    """A client straight to the osmem clone, for checking what the server holds."""
    return OpenSearch(hosts=[osmem_clone.url])


@pytest.fixture
def synced(reopen):
    """Open the library with sync pointed at `url` (and fast retries)."""

    def _open(url: str, **changes):
        return reopen(remote_url=url, **{**FAST_REMOTE, **changes})

    return _open


@pytest.fixture
def remote_cli(cli):
    """`python -m visualfinder` that can load the test keyring backend."""
    import visualfinder

    root = str(Path(visualfinder.__file__).resolve().parent.parent)

    def _run(*args, env=None, **kwargs):
        return cli(*args, env={"PYTHONPATH": os.pathsep.join([root, str(HERE)]), **(env or {})}, **kwargs)

    return _run
