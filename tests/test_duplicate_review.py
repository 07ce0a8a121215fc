"""Reviewing duplicates: the copy suggested to keep, keeping one (the others to a trash folder),
and decisions that hold across rescans, renames and model switches."""

from __future__ import annotations

import shutil

import pytest
from imagegen import studio_image

from visualfinder.catalog.records import ImageRecord
from visualfinder.errors import QueryError
from visualfinder.search.duplicates import keep_rank, suggest_keeper


def _record(i, width=1000, height=800, fmt="JPEG", size=50_000, mtime=10, **product):
    return ImageRecord(id=i, path=f"/c/{i}", folder_id=1, size=size, mtime_ns=mtime, width=width, height=height,
                       format=fmt, thumb_path=None, content_hash=None, **product)  # fmt: skip


def test_the_suggested_copy_ranks_resolution_then_original_format_then_product_data_then_age():
    small_png = _record(1, 500, 400, "PNG", size=900_000)
    big_jpeg = _record(2, 1000, 800, "JPEG", size=200_000)
    assert suggest_keeper([small_png, big_jpeg]) == 1  # resolution first
    png = _record(3, fmt="PNG", size=10_000)
    tiff = _record(4, fmt="TIFF", size=20_000)
    jpeg = _record(5, fmt="JPEG", size=90_000)
    assert suggest_keeper([jpeg, png]) == 1  # the original format over a bigger re-encoding
    assert suggest_keeper([jpeg, png, tiff]) == 2  # then the larger original
    assert suggest_keeper([_record(6, size=40_000), _record(7, size=60_000)]) == 1  # same format: larger
    plain, described = _record(8, mtime=1), _record(9, mtime=5, sku="AB-1")
    assert suggest_keeper([plain, described]) == 1  # product data over age
    assert suggest_keeper([_record(10, mtime=9), _record(11, mtime=3)]) == 1  # then the oldest
    tagged = _record(12, mtime=9, tags=["oak"])
    assert suggest_keeper([_record(13, mtime=3), tagged]) == 1
    assert keep_rank(_record(14, width=None, height=None)) > keep_rank(_record(15))


def _save(img, path, fmt, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


@pytest.fixture
def copies(tmp_path):
    root = tmp_path / "catalog"
    base = studio_image(3)
    files = {
        "png": _save(base, root / "orig.png", "PNG"),
        "jpeg": _save(base, root / "copy.jpg", "JPEG", quality=85),
        "small": _save(base.resize((320, 240)), root / "small.jpg", "JPEG", quality=85),
    }
    files["twin"] = root / "twin" / "orig.png"
    files["twin"].parent.mkdir()
    shutil.copyfile(files["png"], files["twin"])
    _save(studio_image(40), root / "other.png", "PNG")
    return root, files


def move_into(trash):
    trash.mkdir(parents=True, exist_ok=True)

    def move(path):
        shutil.move(path, trash / f"{len(list(trash.iterdir()))}_{path.rsplit('/', 1)[-1]}")
        return True

    return move


def test_keep_one_moves_the_others_to_the_trash_and_the_catalog_follows(library, copies, tmp_path):
    root, files = copies
    library.index([root])
    group = library.duplicates.find().tier("same_picture")[0]
    paths = [r.path for r in group.members]
    assert group.members[group.suggested].path in (str(files["png"]), str(files["twin"]))
    keep = group.members[group.suggested]
    others = [r.path for r in group.members if r.path != keep.path]
    trash = tmp_path / "trash"
    report = library.duplicates.keep_one(keep.path, others, move_into(trash))
    assert sorted(report.moved) == sorted(others) and not report.failed
    assert report.removed_from_catalog == len(others)
    assert len(list(trash.iterdir())) == len(others) and (root / keep.path).exists()
    assert all(not (root / p).exists() for p in others)
    assert library.status().stats.ok == 5 - len(others)
    remaining = [r.path for g in library.duplicates.find().groups for r in g.members]
    assert not set(others) & set(remaining) and len(paths) >= 2


def test_keep_one_refuses_when_the_kept_copy_is_gone_and_reports_refusals(library, copies, tmp_path):
    root, files = copies
    library.index([root])
    files["png"].unlink()
    with pytest.raises(QueryError, match="nothing was moved"):
        library.duplicates.keep_one(files["png"], [files["jpeg"]], move_into(tmp_path / "trash"))
    assert files["jpeg"].exists()
    with pytest.raises(QueryError, match="cannot also go"):
        library.duplicates.keep_one(files["jpeg"], [files["jpeg"]], move_into(tmp_path / "trash"))

    def refuse(path):
        return False

    report = library.duplicates.keep_one(files["jpeg"], [files["small"]], refuse)
    assert report.moved == [] and report.failed[0][0] == str(files["small"]) and files["small"].exists()
    assert library.status().stats.ok == 5  # nothing left the catalog


def test_a_kept_group_stays_resolved_across_rescans_renames_and_a_model_switch(library, copies, reopen):
    root, files = copies
    library.index([root])
    report = library.duplicates.find()
    group = report.tier("same_picture")[0]
    members = [r.path for r in group.members]
    assert library.duplicates.mark_not_duplicates(members, "keep_both") >= 1

    def grouped_together():
        found = library.duplicates.find()
        return [
            g
            for g in found.groups
            if g.tier != "identical" and len(set(members) & {r.path for r in g.members}) > 1
        ]

    assert grouped_together() == []
    library.index()  # a rescan
    assert grouped_together() == []
    renamed = files["jpeg"].with_name("renamed.jpg")
    files["jpeg"].rename(renamed)
    assert library.index().moved == 1
    members = [str(renamed) if p == str(files["jpeg"]) else p for p in members]
    assert grouped_together() == []
    library.models.switch("vf-tiny-b", "none")
    assert library.model.name == "vf-tiny-b"
    assert grouped_together() == []
    # The decision is about those files: a new copy still groups with them.
    shutil.copyfile(files["small"], root / "new copy.jpg")
    library.index()
    found = library.duplicates.find()
    assert any(str(root / "new copy.jpg") in {r.path for r in g.members} for g in found.groups)
