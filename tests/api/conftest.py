"""The API tests' shared server: a small shop (chairs, lamps), indexed, served once per module."""

from __future__ import annotations

import pytest
from api_helpers import ApiServer, index_folders
from imagegen import make_catalog


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    chairs = make_catalog(root / "catalog" / "chairs", 8)
    lamps = make_catalog(root / "catalog" / "lamps", 6, start_seed=40, ext="png")
    data_dir = root / "vf-data"
    index_folders(data_dir, root / "catalog" / "chairs", root / "catalog" / "lamps")
    server = ApiServer(data_dir)
    yield server, chairs, lamps, root
    server.stop()
