"""CLI for catalog work: import-metadata, tag, query bar search, combined queries, metric and model."""

from __future__ import annotations

import json
import os

import pytest
from imagegen import make_catalog

from visualfinder.cli.main import main


def _out(capsys) -> str:
    return capsys.readouterr().out


@pytest.fixture
def indexed(tmp_path, capsys):
    root = tmp_path / "catalog"
    chairs = make_catalog(root / "chairs", 4)
    lamps = make_catalog(root / "lamps", 3, start_seed=20, ext="png")
    assert main(["index", str(root)]) == 0
    capsys.readouterr()
    return root, chairs, lamps


def test_import_metadata_tags_and_a_query_bar_search(indexed, tmp_path, capsys):
    root, chairs, lamps = indexed
    feed = tmp_path / "products.csv"
    feed.write_text(
        "image,sku,title,tags,price,colour\n"
        f"chairs/{chairs[0].name},AB-12,Oak chair,oak,129,red\n{chairs[1].name},AB-13,Walnut chair,walnut,80,blue\n"
        "ghost.jpg,XX,Ghost,,,\n",
        encoding="utf-8",
    )
    assert main(["import-metadata", str(feed), "--base", str(root)]) == 0
    out = _out(capsys)
    assert "3 rows: 2 matched, updated 2 images" in out and "line 4: no image matches ghost.jpg" in out
    assert "5 images have no product metadata" in out

    assert main(["tag", "add", str(chairs[2]), "Oak", "garden"]) == 0
    assert _out(capsys).strip() == "garden, oak"
    assert main(["tag", "remove", str(chairs[2]), "garden"]) == 0
    assert _out(capsys).strip() == "oak"
    assert main(["tag", "list"]) == 0
    assert _out(capsys).split()[:2] == ["2", "oak"]

    assert main(["search", "--query", "folder:chairs tag:oak armchair", "--json"]) == 0
    results = json.loads(_out(capsys))
    assert sorted(r["path"] for r in results) == sorted([str(chairs[0]), str(chairs[2])])
    assert main(["search", "-q", "tag:oak price:<200 armchair", "--json"]) == 0  # chairs[2] has no price
    assert [r["path"] for r in json.loads(_out(capsys))] == [str(chairs[0])]
    hit = next(r for r in results if r["path"] == str(chairs[0]))
    assert (hit["sku"], hit["title"], hit["tags"], hit["price"], hit["extra"]) == (
        "AB-12",
        "Oak chair",
        ["oak"],
        129.0,
        {"colour": "red"},
    )
    assert main(["search", "--query", "colour:blue", "--json"]) == 0  # filters only: a listing
    listing = json.loads(_out(capsys))
    assert [r["path"] for r in listing] == [str(chairs[1])] and listing[0]["score"] is None
    assert main(["search", "--where", "sku=ab-12", "--text", "chair"]) == 0
    table = _out(capsys)
    assert "Oak chair [AB-12]" in table and len(table.strip().splitlines()) == 2


def test_combined_queries_minus_terms_and_file_filters(indexed, tmp_path, capsys):
    root, chairs, lamps = indexed
    assert main(["search", str(chairs[0]), "-k", "7", "--json"]) == 0
    cosine = next(r["score"] for r in json.loads(_out(capsys)) if r["path"] == str(chairs[1]))
    # Two query images are averaged: each is then at cos = sqrt((1 + c) / 2) from the query.
    assert main(["search", str(chairs[0]), str(chairs[1]), "-k", "7", "--json"]) == 0
    both = {r["path"]: r["score"] for r in json.loads(_out(capsys))}
    expected = ((1 + cosine) / 2) ** 0.5
    assert both[str(chairs[0])] == pytest.approx(expected, abs=2e-3) == both[str(chairs[1])]
    assert (
        main(
            ["search", str(chairs[0]), "--minus", str(chairs[1]), "--minus-text", "wood", "-k", "7", "--json"]
        )
        == 0
    )
    minus = {r["path"]: r["score"] for r in json.loads(_out(capsys))}
    assert len(minus) == 7
    # The subtracted image ends up at the bottom (vf-tiny's random vectors leave near-ties there).
    assert minus[str(chairs[1])] <= min(minus.values()) + 5e-3
    assert minus[str(chairs[1])] < both[str(chairs[1])] - 0.5
    big = max(lamps, key=lambda p: p.stat().st_size)
    assert (
        main(["search", str(chairs[0]), "--type", "png", "--min-size", str(big.stat().st_size), "--json"])
        == 0
    )
    assert [r["path"] for r in json.loads(_out(capsys))] == [str(big)]
    os.utime(chairs[3], (1_500_000_000, 1_500_000_000))
    assert main(["index"]) == 0
    capsys.readouterr()
    assert main(["search", str(chairs[0]), "--before", "2018-01", "--json"]) == 0
    assert [r["path"] for r in json.loads(_out(capsys))] == [str(chairs[3])]
    assert main(["search", "--minus-text", "wood"]) == 2
    assert "need something to search for" in capsys.readouterr().err


def test_metric_is_chosen_at_creation_shown_by_status_and_switched_with_set_metric(tmp_path, capsys):
    files = make_catalog(tmp_path / "catalog", 4)
    assert main(["--metric", "l2", "index", str(tmp_path / "catalog")]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    assert json.loads(_out(capsys))["metric"] == "l2"
    assert main(["search", str(files[0]), "-k", "2"]) == 0
    table = _out(capsys)
    assert table.splitlines()[0].split()[:2] == ["rank", "dist"] and " 0.000 " in table.splitlines()[1]
    assert main(["--metric", "ip", "search", str(files[0])]) == 2
    assert "set-metric ip" in capsys.readouterr().err
    assert main(["set-metric", "ip"]) == 0
    assert "now uses the ip metric (4 vectors" in _out(capsys)
    assert main(["status"]) == 0
    assert "metric:     ip (score = cosine similarity)" in _out(capsys)
    assert main(["search", str(files[0]), "-k", "1", "--json"]) == 0
    assert json.loads(_out(capsys))[0]["score"] > 0.999


def test_switch_model_from_the_cli_and_status(indexed, capsys):
    assert main(["--model", "vf-tiny-b", "status"]) == 0
    assert "settings ask for vf-tiny-b/random-seed0" in _out(capsys)
    assert main(["switch-model"]) == 2  # nothing pending, and the settings name the library's model
    assert "give the model" in capsys.readouterr().err
    assert main(["switch-model", "vf-tiny-b", "none"]) == 0
    assert "the library now uses vf-tiny-b/random-seed0: 7 embedded" in _out(capsys)
    assert main(["status", "--json"]) == 0
    status = json.loads(_out(capsys))
    assert status["model"] == "vf-tiny-b" and status["switch"] is None
    assert status["stored_models"] == {"vf-tiny-b/random-seed0": 7, "vf-tiny/random-seed0": 7}
    assert main(["forget-model", "vf-tiny/random-seed0"]) == 0
    assert "deleted 7 stored vectors" in _out(capsys)
