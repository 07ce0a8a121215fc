"""Power loss and disk damage to the index file: detected on open, rebuilt from SQLite with a warning.

tests/test_index_file.py covers a deleted, garbage and half-truncated file. Here: truncation at
many points, zero-filled blocks (what a power cut can leave behind delayed allocation), flipped
bits inside the graph (which used to load fine and crash usearch on the first search), and
sidecars that are missing, garbage, or describe another file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from rel_harness import rng_for, scaled, synthetic_library

from visualfinder.config import Settings
from visualfinder.library.facade import open_library
from visualfinder.library.live_index import INDEX_FILE
from visualfinder.search.request import QueryTerm, SearchRequest
from visualfinder.search.vector_index import sidecar_path

COUNT = 600


def _damage_cases() -> list[tuple[str, object]]:
    rng = rng_for("index-damage")
    cases: list[tuple[str, object]] = [
        ("empty file", lambda b: b""),
        ("one byte", lambda b: b[:1]),
        ("header only", lambda b: b[:64]),
        ("all but the last byte", lambda b: b[:-1]),
        ("zeros, same size", lambda b: bytes(len(b))),
        ("zero-filled tail (power cut)", lambda b: b[: len(b) // 3] + bytes(len(b) - len(b) // 3)),
        ("garbage appended", lambda b: b + os.urandom(4096)),
        ("one block zeroed in the middle", lambda b: b[:8192] + bytes(4096) + b[12288:]),
    ]
    for _ in range(scaled(6, 60)):
        cut = rng.randrange(2, 10_000)
        cases.append((f"truncated at byte {cut}", lambda b, cut=cut: b[: min(cut, len(b) - 1)]))
    for i in range(scaled(8, 120)):
        seed = rng.randrange(1 << 30)
        cases.append((f"bit flips #{i}", lambda b, seed=seed: _flip_bits(b, seed)))
    return cases


def _flip_bits(data: bytes, seed: int) -> bytes:
    rng = rng_for(f"flip:{seed}")
    out = bytearray(data)
    for _ in range(rng.randint(1, 40)):
        pos = rng.randrange(64, len(out))  # past the header: the damage that used to go unnoticed
        out[pos] ^= 1 << rng.randrange(8)
    if bytes(out) == data:
        out[-1] ^= 1
    return bytes(out)


@pytest.fixture
def saved_library(data_dir):
    ids = synthetic_library(data_dir, COUNT)
    lib = open_library(Settings.load(data_dir))
    expected = [r.id for r in _similar(lib, ids[7])]
    lib.close()
    return data_dir, ids, expected


def _similar(lib, image_id: int, k: int = 5):
    return lib.search(SearchRequest([QueryTerm("similar", image_id)], k=k)).results


def _reopen_expect_rebuild(data_dir: Path, ids: list[int], expected: list[int], caplog) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visualfinder"):
        lib = open_library(Settings.load(data_dir))
    try:
        assert lib.index_health == "rebuilt"
        assert any("rebuil" in r.getMessage() for r in caplog.records), [
            r.getMessage() for r in caplog.records
        ]
        assert len(lib.vector_index) == COUNT
        assert [r.id for r in _similar(lib, ids[7])] == expected
    finally:
        lib.close()
    # ... and the rebuilt index was saved whole: the next open uses it as it is.
    lib = open_library(Settings.load(data_dir))
    try:
        assert lib.index_health == "ok"
    finally:
        lib.close()


def test_every_kind_of_damaged_index_file_is_detected_and_rebuilt(saved_library, caplog):
    data_dir, ids, expected = saved_library
    path = data_dir / INDEX_FILE
    good, sidecar = path.read_bytes(), sidecar_path(path).read_text()
    for name, damage in _damage_cases():
        path.write_bytes(damage(good))
        sidecar_path(path).write_text(sidecar)
        try:
            _reopen_expect_rebuild(data_dir, ids, expected, caplog)
        except AssertionError as exc:
            raise AssertionError(f"damage {name!r}: {exc}") from exc
        assert path.read_bytes() != damage(good)


@pytest.mark.parametrize(
    "sidecar_damage",
    ["missing", "empty", "garbage", "truncated json", "count of another file", "checksum of another file",
     "generation from the future"],
)  # fmt: skip
def test_a_missing_or_wrong_sidecar_means_a_rebuild(saved_library, caplog, sidecar_damage):
    data_dir, ids, expected = saved_library
    side = sidecar_path(data_dir / INDEX_FILE)
    state = json.loads(side.read_text())
    if sidecar_damage == "missing":
        side.unlink()
    elif sidecar_damage == "empty":
        side.write_text("")
    elif sidecar_damage == "garbage":
        side.write_bytes(os.urandom(200))
    elif sidecar_damage == "truncated json":
        side.write_text(json.dumps(state)[:40])
    elif sidecar_damage == "count of another file":
        side.write_text(json.dumps({**state, "count": state["count"] - 1}))
    elif sidecar_damage == "checksum of another file":
        side.write_text(json.dumps({**state, "xxh3": "0" * 32}))
    else:  # an index newer than its catalog (the catalog lost its last commits in a power cut)
        side.write_text(json.dumps({**state, "generation": state["generation"] + 5}))
    _reopen_expect_rebuild(data_dir, ids, expected, caplog)


def test_a_sidecar_written_before_checksums_still_opens_the_index(saved_library):
    data_dir, ids, expected = saved_library
    side = sidecar_path(data_dir / INDEX_FILE)
    state = json.loads(side.read_text())
    del state["xxh3"]
    side.write_text(json.dumps(state))
    lib = open_library(Settings.load(data_dir))
    try:
        assert lib.index_health == "ok"
        assert [r.id for r in _similar(lib, ids[7])] == expected
    finally:
        lib.close()
