"""Batch match: each photo of a folder against the catalog, through the library and the CLI."""

from __future__ import annotations

import csv
import json
import threading

import pytest
from imagegen import huge_png_header, make_catalog, write_image

from visualfinder.cli.main import main
from visualfinder.errors import FolderNotFoundError
from visualfinder.jobs import CancelToken
from visualfinder.products.export import unneutralise
from visualfinder.search.request import QueryTerm, SearchRequest


@pytest.fixture
def photos(tmp_path):
    """A folder of customer photos: re-shot (resized JPEG) copies of catalog items, and bad files."""
    folder = tmp_path / "customer photos"
    for seed in (2, 5, 7):
        write_image(folder / f"photo_{seed}.jpg", seed, quality=60)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "bomb.png").write_bytes(huge_png_header(60000, 60000))
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_each_photo_gets_its_top_k_and_bad_files_are_reported(library, tmp_path, photos):
    catalog = make_catalog(tmp_path / "catalog", 10)
    library.index([tmp_path / "catalog"])
    seen = []
    report = library.match_folder(photos, 3, progress=seen.append)
    assert [m.photo.rsplit("/", 1)[-1] for m in report.matches] == [
        "bomb.png",
        "corrupt.jpg",
        "photo_2.jpg",
        "photo_5.jpg",
        "photo_7.jpg",
    ]
    good = {m.photo.rsplit("/", 1)[-1]: m for m in report.matches if not m.error}
    for seed in (2, 5, 7):
        match = good[f"photo_{seed}.jpg"]
        assert len(match.results) == 3 and match.best.path == str(catalog[seed])
        assert [r.rank for r in match.results] == [1, 2, 3]
        assert match.results[0].score >= match.results[1].score
    failed = {m.photo.rsplit("/", 1)[-1]: m.error for m in report.failed}
    assert set(failed) == {"bomb.png", "corrupt.jpg"}
    assert all("cannot use" in e for e in failed.values())
    assert seen[-1].done == seen[-1].total == 5


def test_photos_are_decoded_on_the_decode_pool_and_embedded_in_batches(reopen, tmp_path, photos):
    library = reopen(batch_size=4)
    catalog = make_catalog(tmp_path / "catalog", 8)
    library.index([tmp_path / "catalog"])
    for seed in (0, 1, 3, 4):
        write_image(photos / f"photo_{seed}.jpg", seed, quality=60)
    embedder = library.live.engine.embedder
    batches, threads = [], set()
    embed_batch, preprocess = embedder.embed_batch, embedder.preprocess

    def counting_embed(tensors):
        batches.append(len(tensors))
        return embed_batch(tensors)

    def noting_preprocess(image):
        threads.add(threading.current_thread().name)
        return preprocess(image)

    embedder.embed_batch, embedder.preprocess = counting_embed, noting_preprocess
    report = library.match_folder(photos, 3)
    assert batches == [4, 3] and threads and all(t.startswith("vf-batch-decode") for t in threads)
    assert len(report.matches) == 9 and {m.photo.rsplit("/", 1)[-1] for m in report.failed} == {
        "bomb.png", "corrupt.jpg"}  # fmt: skip
    # The same matches and scores as one photo searched at a time.
    for match in report.matches:
        if not match.error:
            alone = library.search(SearchRequest([QueryTerm("image", match.photo)], k=3)).results
            assert [r.path for r in match.results] == [r.path for r in alone]
            assert [r.score for r in match.results] == pytest.approx([r.score for r in alone], abs=1e-4)
    assert good_best(report) == {f"photo_{s}.jpg": str(catalog[s]) for s in (0, 1, 2, 3, 4, 5, 7)}


def good_best(report):
    return {m.photo.rsplit("/", 1)[-1]: m.best.path for m in report.matches if not m.error}


def test_a_batch_stops_between_photos_when_cancelled(library, tmp_path, photos):
    from visualfinder.errors import Cancelled

    make_catalog(tmp_path / "catalog", 4)
    library.index([tmp_path / "catalog"])
    cancel = CancelToken()

    def progress(p):
        if p.done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        library.match_folder(photos, 2, progress=progress, cancel=cancel)
    with pytest.raises(FolderNotFoundError):
        library.match_folder(tmp_path / "missing", 2)


def test_search_batch_from_the_cli_writes_csv_and_json(tmp_path, photos, capsys):
    catalog = make_catalog(tmp_path / "catalog", 8)
    assert main(["index", str(tmp_path / "catalog")]) == 0
    capsys.readouterr()
    out = tmp_path / "matches.csv"
    assert main(["search", "--batch", str(photos), "-k", "2", "--csv", str(out)]) == 1  # two bad files
    captured = capsys.readouterr()
    assert "photo_2.jpg" in captured.out and str(catalog[2]) in captured.out
    assert "corrupt.jpg: cannot use" in captured.err and "wrote the matches of 5 photos" in captured.err
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["photo", "rank", "sku", "title", "score", "path"]
    matched = [r for r in rows if r["rank"]]
    assert len(matched) == 6 and len(rows) == 8
    first = next(r for r in matched if r["photo"].endswith("photo_5.jpg") and r["rank"] == "1")
    assert first["path"] == str(catalog[5]) and float(first["score"]) > 0.5
    bad = next(r for r in rows if r["photo"].endswith("corrupt.jpg"))
    assert bad["rank"] == "" and "cannot use" in unneutralise(bad["title"])

    good = tmp_path / "good"
    write_image(good / "one.png", 3)
    assert main(["search", "--batch", str(good), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["k"] == 5 and len(data["photos"]) == 1
    assert data["photos"][0]["error"] is None and data["photos"][0]["matches"][0]["path"] == str(catalog[3])


def test_search_batch_refuses_a_query_beside_the_folder(tmp_path, photos, capsys):
    assert main(["search", "--batch", str(photos), "--text", "chair"]) == 2
    assert "--batch takes its query photos from FOLDER" in capsys.readouterr().err
