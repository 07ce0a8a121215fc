"""The review windows through their real widgets: Find duplicates (keep one to a test trash
folder, keep all, export, Stop, paging) and Match a folder of photos (table, matches grid, CSV)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest
from guihelpers import WAIT_MS
from imagegen import make_catalog, studio_image, write_image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListView

from visualfinder.catalog.records import ImageRecord
from visualfinder.gui.duplicates_model import PAGE, DuplicateGroupsModel
from visualfinder.gui.thumbnails import ThumbnailLoader
from visualfinder.search.duplicates import DuplicateGroup


def _save(img, path, fmt, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


@pytest.fixture
def dupes(tmp_path):
    """Two products, each as an original PNG, a JPEG of it and a smaller JPEG; one PNG twice."""
    root = tmp_path / "catalog"
    files = {}
    for seed in (3, 8):
        base = studio_image(seed)
        files[seed] = {
            "png": _save(base, root / f"orig_{seed}.png", "PNG"),
            "jpeg": _save(base, root / "copies" / f"copy_{seed}.jpg", "JPEG", quality=85),
            "small": _save(
                base.resize((320, 240)), root / "copies" / f"small_{seed}.jpg", "JPEG", quality=85
            ),
        }
    twin = root / "twin" / "orig_3.png"
    twin.parent.mkdir()
    shutil.copyfile(files[3]["png"], twin)
    files[3]["twin"] = twin
    make_catalog(root / "other", 3, start_seed=60)
    return root, files


def open_duplicates(qtbot, window):
    window.duplicates_action.trigger()
    view = window.review_actions.duplicates_window
    qtbot.waitUntil(lambda: view.report is not None, timeout=WAIT_MS)
    return view


def choose_tier(view, tier):
    view.tier_box.setCurrentIndex(view.tier_box.findData(tier))


def test_keep_one_moves_the_other_copies_to_the_trash_and_the_catalog_follows(
    qtbot, make_window, dupes, tmp_path
):
    root, files = dupes
    window = make_window([root])
    before = window.session.snapshot.images
    view = open_duplicates(qtbot, window)
    assert view.model.total >= 2 and "Same picture (2)" in [view.tier_box.itemText(i) for i in range(4)]
    choose_tier(view, "same_picture")
    group = view.current
    assert group is not None and len(view.cards) == len(group.members) >= 3
    suggested = group.suggested
    assert view.chosen() == suggested and "(suggested)" in view.cards[suggested].keep.text()
    assert group.members[suggested].format == "PNG"  # the original over its JPEG copies
    # The user picks another copy to keep by clicking its card.
    other = next(i for i, r in enumerate(group.members) if r.format == "JPEG")
    qtbot.mouseClick(view.cards[other].thumb, Qt.MouseButton.LeftButton)
    assert view.chosen() == other
    kept = group.members[other].path
    leaving = [r.path for r in group.members if r.path != kept]
    assert f"move {len(leaving)} others" in view.trash_button.text()

    view.dialogs.answers["Move to the trash"] = "Cancel"
    qtbot.mouseClick(view.trash_button, Qt.MouseButton.LeftButton)
    assert all((root / p).exists() for p in leaving) and view.current is group

    view.dialogs.answers["Move to the trash"] = "Move to Trash"
    with qtbot.waitSignal(view.groupResolved, timeout=WAIT_MS):
        qtbot.mouseClick(view.trash_button, Qt.MouseButton.LeftButton)
    title, text = view.dialogs.asked[-1]
    assert title == "Move to the trash" and f"Move {len(leaving)} files" in text and "KB" in text
    trash = tmp_path / "trash"
    assert sorted(window.desktop.trashed) == sorted(leaving)
    assert len(list(trash.iterdir())) == len(leaving)
    assert all(not (root / p).exists() for p in leaving) and (root / kept).exists()
    assert group not in view.model.groups()
    qtbot.waitUntil(lambda: window.session.snapshot.images == before - len(leaving), timeout=WAIT_MS)
    # Found again, the resolved group does not come back.
    with qtbot.waitSignal(view.groupsShown, timeout=WAIT_MS) as shown:
        qtbot.mouseClick(view.find_button, Qt.MouseButton.LeftButton)
    listed = {r.path for g in shown.args[0].groups for r in g.members}
    assert not listed & set(leaving)


def test_keep_all_is_remembered_and_found_again_stays_resolved(qtbot, make_window, dupes):
    root, files = dupes
    window = make_window([root])
    view = open_duplicates(qtbot, window)
    choose_tier(view, "identical")
    group = view.current
    assert group.tier == "identical" and {r.path for r in group.members} == {
        str(files[3]["png"]),
        str(files[3]["twin"]),
    }
    with qtbot.waitSignal(view.groupResolved, timeout=WAIT_MS):
        qtbot.mouseClick(view.keep_all_button, Qt.MouseButton.LeftButton)
    decisions = window.session.library.duplicates.decisions()
    assert [(d.decision, {d.path_a, d.path_b}) for d in decisions] == [
        ("keep_both", {r.path for r in group.members})
    ]
    assert view.tier_box.currentText() == "Identical files (0)"
    with qtbot.waitSignal(view.groupsShown, timeout=WAIT_MS) as shown:
        view.slider.setValue(view.slider.value() - 1)  # a new threshold finds again
    assert shown.args[0].tier("identical") == [] and shown.args[0].threshold == pytest.approx(view.threshold)
    assert all((root / p).exists() for p in (files[3]["png"], files[3]["twin"]))


def test_not_duplicates_and_csv_export(qtbot, make_window, dupes, tmp_path):
    root, files = dupes
    window = make_window([root])
    view = open_duplicates(qtbot, window)
    out = tmp_path / "groups.csv"
    view.dialogs.csv = (str(out), False)
    total = view.model.total
    qtbot.mouseClick(view.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(out.exists, timeout=WAIT_MS)
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len({r["group"] for r in rows}) == total and sum(1 for r in rows if r["keep"] == "keep") == total
    with qtbot.waitSignal(view.groupResolved, timeout=WAIT_MS):
        qtbot.mouseClick(view.distinct_button, Qt.MouseButton.LeftButton)
    assert {d.decision for d in window.session.library.duplicates.decisions()} == {"distinct"}
    assert view.model.total == total - 1


def test_finding_shows_progress_with_stop_and_a_stop_keeps_the_last_groups(qtbot, make_window, dupes):
    root, _ = dupes
    window = make_window([root])
    view = open_duplicates(qtbot, window)
    shown = view.model.total
    job = view.find()
    assert [t.title for t in view.progress.tasks] == ["Finding duplicates"] and view.progress.tasks[0].cancel
    job.cancel()  # the Stop button's call
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    assert job.state == "cancelled" and view.model.total == shown and view.find_button.isEnabled()
    qtbot.waitUntil(lambda: not view.progress.tasks, timeout=WAIT_MS)


def test_groups_are_listed_while_the_search_runs_and_stop_keeps_those_found(qtbot, make_window, dupes):
    root, _ = dupes
    window = make_window([root])
    view = open_duplicates(qtbot, window)
    complete = [[r.path for r in g.members] for g in view.report.groups]
    arrived, states = [], []

    def on_arrived(groups):
        arrived.extend(groups)
        states.append(view.job.state)

    view.groupsArrived.connect(on_arrived)
    with qtbot.waitSignal(view.groupsShown, timeout=WAIT_MS):
        qtbot.mouseClick(view.find_button, Qt.MouseButton.LeftButton)
    # Each part reached the list while the job was still running, identical files first.
    assert len(states) >= 2 and set(states) == {"running"} and arrived[0].tier == "identical"
    assert (
        [[r.path for r in g.members] for g in arrived]
        == complete
        == [[r.path for r in g.members] for g in view.model.groups()]
    )
    # The first group can be chosen before the search ends; Stop then keeps the groups found so far.
    view.groupsArrived.disconnect(on_arrived)
    first = []

    def stop_at_first(groups):
        first.append((groups, view.current))
        view.job.cancel()  # the Stop button's call

    view.groupsArrived.connect(stop_at_first)
    job = view.find()
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    assert job.state == "cancelled" and len(first) == 1
    groups, current = first[0]
    assert current is groups[0] and view.model.groups() == groups and len(groups) < len(complete)
    assert "found before Stop" in view.statusBar().currentMessage()


def _fake_group(n: int) -> DuplicateGroup:
    members = [ImageRecord(id=n * 2 + i, path=f"/c/{n}_{i}.jpg", folder_id=1, size=1000 + i, mtime_ns=0, width=10,
                           height=10, format="JPEG", thumb_path=None, content_hash=None) for i in range(2)]  # fmt: skip
    return DuplicateGroup("identical", members, [1.0, 1.0])


def test_thousands_of_groups_are_listed_a_page_at_a_time(qtbot):
    loader = ThumbnailLoader(32)
    model = DuplicateGroupsModel(loader)
    groups = [_fake_group(n) for n in range(5000)]
    model.set_groups(groups)
    assert model.rowCount() == PAGE and model.total == 5000 and model.canFetchMore()
    view = QListView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.resize(300, 400)
    view.show()
    view.scrollToBottom()  # the view fetches the next page as it reaches the end
    qtbot.waitUntil(lambda: model.rowCount() > PAGE, timeout=WAIT_MS)
    assert model.rowCount() < 5000
    assert model.remove(groups[-1]) == -1 and model.total == 4999  # not shown yet: no row moves
    assert model.remove(groups[0]) == 0 and model.group(0) is groups[1]
    assert model.counts()["identical"] == 4998
    loader.shutdown()


def test_match_a_folder_of_photos_shows_the_table_opens_matches_and_exports(
    qtbot, make_window, catalog_dir, tmp_path
):
    window = make_window([catalog_dir])
    photos = tmp_path / "photos"
    for seed in (1, 4):
        write_image(photos / f"customer_{seed}.jpg", seed, quality=60)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not an image")
    window.dialogs.folder = str(photos)
    window.batch_action.trigger()
    batch = window.review_actions.batch_window
    qtbot.waitUntil(lambda: batch.report is not None, timeout=WAIT_MS)
    model = batch.model
    assert model.rowCount() == 3 and model.columnCount() == 4
    texts = {model.index(r, 0).data(): model.index(r, 1).data() for r in range(3)}
    assert "cannot use" in texts["broken.jpg"]
    row = next(r for r in range(3) if model.index(r, 0).data() == "customer_4.jpg")
    assert model.photo(row).best.path == str(catalog_dir / "product_0004.jpg")
    assert float(model.index(row, 2).data()) > 0.5
    # Double-clicking a row shows that photo's matches grid in the main window.
    batch.table.selectRow(row)
    rect = batch.table.visualRect(model.index(row, 1))
    with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS) as results:
        qtbot.mouseClick(batch.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(batch.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.query.source.path == str(photos / "customer_4.jpg")
    assert results.args[0].results[0].path == str(catalog_dir / "product_0004.jpg")
    broken = next(r for r in range(3) if model.index(r, 0).data() == "broken.jpg")
    assert batch.show_row(broken) is False  # no matches to show
    out = tmp_path / "matches.csv"
    batch.dialogs.csv = (str(out), False)
    qtbot.mouseClick(batch.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(out.exists, timeout=WAIT_MS)
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 5 + 1 and list(rows[0]) == ["photo", "rank", "sku", "title", "score", "path"]


def test_the_real_trash_moves_a_file_into_the_freedesktop_trash(tmp_path):
    """The app's own trash function, in a process whose home is a temporary folder (trash
    libraries read the home at import): the file lands in the freedesktop trash, restorable."""
    home = tmp_path / "home"
    path = write_image(home / "photo.jpg", 1)
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
           "QT_QPA_PLATFORM": "offscreen"}  # fmt: skip
    code = "import sys; from visualfinder.gui.dialogs import Desktop; print(Desktop().move_to_trash(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    assert out.stdout.strip() == "True"
    assert not path.exists()
    trash = home / ".local" / "share" / "Trash"
    assert [p.name for p in (trash / "files").iterdir()] == ["photo.jpg"]
    assert (trash / "info" / "photo.jpg.trashinfo").read_text().count(str(path)) == 1
