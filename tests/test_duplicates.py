"""Duplicates in three tiers, from index neighbours, with remembered decisions.

Generated copies (resize, JPEG quality 60, 5 % crop, format change) must land in tier 1 or 2;
look-alikes (the same product in another colour, or with a lamp beside it) must not. vf-tiny is
a random-weight model: it gives near-copies a cosine of ~1, but also gives unrelated generated
pictures up to ~0.97, so on it tier 3 ("similar", CLIP above the threshold) is only checked
for its mechanics; its meaning needs real CLIP weights.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from imagegen import product_image, studio_image

from visualfinder.errors import Cancelled, QueryError
from visualfinder.jobs import CancelToken
from visualfinder.search.perceptual import (
    MAX_CELL_DIFFERENCE,
    MAX_HAMMING,
    as_array,
    cell_difference,
    fingerprint,
    hash_distance,
)

SEEDS = (0, 1, 2)


def _save(img, path, fmt, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


@pytest.fixture
def dupes(tmp_path):
    root = tmp_path / "catalog"
    files = {}
    for s in SEEDS:
        base = studio_image(s)
        w, h = base.size
        f = {
            "base": _save(base, root / "a" / f"base_{s}.png", "PNG"),
            "resized": _save(base.resize((w // 2, h // 2)), root / "copies" / f"resized_{s}.jpg", "JPEG", quality=90),
            "q60": _save(base, root / "copies" / f"q60_{s}.jpg", "JPEG", quality=60),
            "crop": _save(base.crop((int(w * 0.05), int(h * 0.05), w, h)), root / "copies" / f"crop_{s}.jpg", "JPEG", quality=92),
            "webp": _save(base, root / "copies" / f"format_{s}.webp", "WEBP", quality=90),
            "recolour": _save(studio_image(s, colour=(30, 140, 60) if s % 2 else (200, 30, 30)), root / "alike" / f"recolour_{s}.png", "PNG"),
            "lamp": _save(studio_image(s, extra_item=True), root / "alike" / f"lamp_{s}.png", "PNG"),
        }  # fmt: skip
        f["copy"] = root / "b" / f"base_{s}.png"
        f["copy"].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f["base"], f["copy"])
        files[s] = f
    for n in range(4):
        _save(product_image(500 + n, (400, 300)), root / "other" / f"other_{n}.png", "PNG")
    return root, files


def _groups(report, tier):
    return [[r.path for r in g.members] for g in report.tier(tier)]


def test_copies_land_in_tiers_1_and_2_and_look_alikes_do_not(library, dupes):
    root, files = dupes
    library.index([root])
    report = library.duplicates.find(threshold=0.95)
    identical = _groups(report, "identical")
    assert sorted(identical) == sorted([[str(f["base"]), str(f["copy"])] for f in files.values()])
    same = _groups(report, "same_picture")
    expected = [[str(f[k]) for k in ("base", "resized", "q60", "crop", "webp")] for f in files.values()]
    assert sorted(g[0] for g in same) == sorted(e[0] for e in expected)  # the largest file leads
    assert sorted(sorted(g) for g in same) == sorted(sorted(e) for e in expected)
    alike = {str(f[k]) for f in files.values() for k in ("recolour", "lamp")}
    assert not alike & {p for g in identical + same for p in g}
    # Tier 3 holds only best files of lower tiers and look-alikes, never a copy twice.
    similar = _groups(report, "similar")
    seen = [p for g in similar for p in g]
    assert len(seen) == len(set(seen))
    assert all(g[0] not in {str(f["copy"]) for f in files.values()} for g in similar)
    assert report.images == 28 and report.suppressed == 0
    assert all(
        g.similarity[0] == 1.0 and all(s >= 0.9 for s in g.similarity)
        for g in report.groups
        if g.tier != "identical"
    )


def test_a_raised_threshold_leaves_the_similar_tier_empty_but_keeps_copies(library, dupes):
    root, files = dupes
    library.index([root])
    strict = library.duplicates.find(threshold=1.0)
    assert strict.tier("similar") == [] or all(min(g.similarity) >= 0.9999 for g in strict.tier("similar"))
    assert len(strict.tier("identical")) == 3
    with pytest.raises(QueryError, match="threshold"):
        library.duplicates.find(threshold=1.5)


def test_decisions_are_remembered_across_runs_renames_and_reopening(library, dupes, reopen):
    root, files = dupes
    library.index([root])
    f0 = files[0]
    assert library.duplicates.mark_not_duplicates([f0["base"], f0["crop"]]) == 1
    assert library.duplicates.mark_not_duplicates([files[1]["base"], files[1]["copy"]], "keep_both") == 1
    report = library.duplicates.find()
    groups = [set(g) for tier in ("identical", "same_picture", "similar") for g in _groups(report, tier)]
    assert not any({str(f0["base"]), str(f0["crop"])} <= g for g in groups)
    assert [str(files[1]["base"]), str(files[1]["copy"])] not in _groups(report, "identical")
    assert any({str(f0["base"]), str(f0["resized"])} <= g for g in groups)  # the rest still groups
    assert report.suppressed >= 2
    renamed = f0["crop"].with_name("crop_0_renamed.jpg")
    f0["crop"].rename(renamed)
    assert library.index().moved == 1
    library.close()
    again = reopen()
    groups = [set(g) for g in _groups(again.duplicates.find(), "same_picture")]
    assert not any({str(f0["base"]), str(renamed)} <= g for g in groups)
    assert {d.decision for d in again.duplicates.decisions()} == {"distinct", "keep_both"}
    assert again.duplicates.forget_decisions([f0["base"], renamed]) == 1
    groups = [set(g) for g in _groups(again.duplicates.find(), "same_picture")]
    assert any({str(f0["base"]), str(renamed)} <= g for g in groups)


def test_groups_larger_than_the_neighbour_list_stay_whole(library, tmp_path):
    base = studio_image(7)
    root = tmp_path / "catalog"
    paths = [_save(base, root / "big.png", "PNG")]
    for n in range(20):
        side = 620 - n * 20
        paths.append(
            _save(base.resize((side, side * 3 // 4)), root / f"small_{n:02d}.jpg", "JPEG", quality=88)
        )
    library.index([root])
    same = library.duplicates.find().tier("same_picture")
    assert len(same) == 1 and [r.path for r in same[0].members] == [str(p) for p in paths]


def _ids(groups):
    return [(g.tier, [r.id for r in g.members], g.similarity) for g in groups]


def test_groups_stream_tier_by_tier_and_the_worker_process_finds_the_same(library, dupes):
    root, files = dupes
    library.index([root])
    streamed = []
    here = library.duplicates.find(on_groups=streamed.append)
    assert streamed and [g for part in streamed for g in part] == here.groups
    assert {g.tier for g in streamed[0]} == {"identical"}  # before any index search
    tiers = [g.tier for part in streamed for g in part]
    assert tiers == sorted(tiers, key=["identical", "same_picture", "similar"].index)

    worker = library.duplicates.worker
    arrived = []
    there = library.duplicates.find(on_groups=arrived.append, in_worker=True)
    assert worker._process is not None and worker._process.pid != os.getpid()
    assert _ids(there.groups) == _ids(here.groups) and there.images == here.images == 28
    assert _ids(g for part in arrived for g in part) == _ids(here.groups)
    # A decision made here reaches the worker's next search (it reads the same catalog).
    assert library.duplicates.mark_not_duplicates([files[0]["base"], files[0]["copy"]]) == 1
    again = library.duplicates.find(in_worker=True)
    assert len(again.tier("identical")) == 2 and again.suppressed >= 1
    # Stop reaches the worker; a worker that died is replaced by the next search.
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        library.duplicates.find(in_worker=True, cancel=cancel)
    worker._process.kill()
    worker._process.join()
    assert _ids(library.duplicates.find(in_worker=True).groups) == _ids(again.groups)
    library.duplicates.close()
    assert worker._process is None


def test_duplicates_csv_and_json_from_the_cli(dupes, tmp_path, capsys):
    from visualfinder.cli.main import main

    root, files = dupes
    assert main(["index", str(root)]) == 0
    capsys.readouterr()
    assert main(["duplicates", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    tiers = [g["tier"] for g in data["groups"]]
    assert tiers.count("identical") == 3 and tiers.count("same_picture") == 3
    assert data["groups"][0]["members"][0]["path"] == str(files[0]["base"])
    out = tmp_path / "dupes.csv"
    assert main(["duplicates", "--csv", str(out), "--tier", "identical"]) == 0
    rows = out.read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("group,tier,position,keep,path") and ",keep," in rows[1] and len(rows) == 7
    assert main(["duplicates", "--distinct", str(files[0]["base"]), str(files[0]["copy"])]) == 0
    assert "remembered 1 pair" in capsys.readouterr().out
    assert main(["duplicates", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [g["tier"] for g in data["groups"]].count("identical") == 2 and data["suppressed_pairs"] >= 1
    assert main(["duplicates", "--decisions"]) == 0
    listed = capsys.readouterr().out
    assert "distinct" in listed and str(files[0]["copy"]) in listed
    assert main(["duplicates"]) == 0
    table = capsys.readouterr().out
    assert "group 1: identical files" in table and "keep" in table
    assert main(["duplicates", "--forget", str(files[0]["base"]), str(files[0]["copy"])]) == 0
    assert "forgot 1" in capsys.readouterr().out


def test_the_perceptual_check_separates_copies_from_look_alikes_with_margin():
    """The thresholds, measured directly on thumbnails-sized images of 20 generated products."""
    import io

    from PIL import Image

    def thumb(img):
        img = img.copy()
        img.thumbnail((256, 256))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    copies, alikes = [], []
    for seed in range(20):
        base = studio_image(seed)
        w, h = base.size
        tb = thumb(base)
        for copy in (base.resize((w // 2, h // 2)), base.crop((0, 0, int(w * 0.95), int(h * 0.95))),
                     base.crop((int(w * 0.02), int(h * 0.04), int(w * 0.97), h))):  # fmt: skip
            tc = thumb(copy)
            copies.append(
                (hash_distance(fingerprint(tb), fingerprint(tc)), cell_difference(as_array(tb), as_array(tc)))
            )
        for alike in (
            studio_image(seed, colour=(90, 200, 220)),
            studio_image(seed, extra_item=True),
            studio_image(seed + 50),
        ):
            ta = thumb(alike)
            alikes.append(
                (hash_distance(fingerprint(tb), fingerprint(ta)), cell_difference(as_array(tb), as_array(ta)))
            )
    assert max(h for h, _ in copies) <= MAX_HAMMING - 3
    assert max(c for _, c in copies) <= MAX_CELL_DIFFERENCE - 3
    assert all(h > MAX_HAMMING or c > MAX_CELL_DIFFERENCE + 3 for h, c in alikes)
