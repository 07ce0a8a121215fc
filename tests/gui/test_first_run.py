"""First run: the model's weights are missing, so a dialog downloads them with progress (from a
local stand-in for the Hub), or takes a weights file; offline, it says so and what to do."""

from __future__ import annotations

import uuid

import open_clip.pretrained
import pytest
from apprunner import drive, main_window
from fakehub import FILENAME, REPO, FakeHub, tiny_weights
from guihelpers import WAIT_MS, ScriptedDialogs
from huggingface_hub import constants as hf_constants
from PySide6.QtWidgets import QWidget

from visualfinder.gui.app import run_app
from visualfinder.gui.first_run import FirstRun, FirstRunDialog
from visualfinder.gui.model_fetch import weights_missing
from visualfinder.gui.workers import JobQueue
from visualfinder.library.facade import CATALOG_FILE


@pytest.fixture
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / FILENAME
    tiny_weights(path)
    return path


@pytest.fixture
def hub_tag(tmp_path, monkeypatch) -> str:
    """A pretrained tag of vf-tiny that downloads from the Hub (the fake one, when started);
    an empty Hugging Face cache; the Hub unreachable until a test points it at its FakeHub."""
    tag = f"fakehub{uuid.uuid4().hex[:8]}"  # loaded models are cached per tag in this process
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "vf-tiny",
                        {tag: open_clip.pretrained._pcfg(hf_hub=f"{REPO}/")})  # fmt: skip
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    point_hub_at(monkeypatch, "http://127.0.0.1:9")  # the discard port: nothing listens, "offline"
    return tag


def point_hub_at(monkeypatch, url: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hf_constants, "ENDPOINT", url)
    monkeypatch.setattr(
        hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )


@pytest.fixture
def parent(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    return widget


@pytest.fixture
def queue():
    queue = JobQueue("test-model")
    yield queue
    queue.shutdown()


def start_first_run(qtbot, settings, queue, parent, dialogs=None) -> tuple[FirstRun, list]:
    outcome: list = []
    first_run = FirstRun(settings, queue, dialogs or ScriptedDialogs(), parent)
    first_run.done.connect(outcome.append)
    first_run.start()
    qtbot.waitUntil(lambda: first_run.dialog is not None or bool(outcome), timeout=WAIT_MS)
    return first_run, outcome


def test_default_model_weights_are_missing_from_an_empty_cache_and_named_by_their_hub_page(tmp_path):
    source = weights_missing("ViT-B-32-256", "datacomp_s34b_b86k", cache_dir=str(tmp_path))
    assert source is not None and source.startswith("https://huggingface.co/")
    assert weights_missing("vf-tiny", "none") is None
    assert weights_missing("vf-tiny", str(tmp_path / "weights.bin")) is None


def test_model_whose_weights_are_here_opens_without_the_dialog(qtbot, settings, queue, parent):
    first_run, outcome = start_first_run(qtbot, settings, queue, parent)  # vf-tiny, no weights
    assert outcome == [settings]
    assert first_run.dialog is None


def test_an_existing_library_opens_without_the_dialog(qtbot, settings, queue, parent, hub_tag, library):
    # The library recorded vf-tiny (no weights); settings naming weights not here change nothing.
    first_run, outcome = start_first_run(qtbot, settings.replace(pretrained=hub_tag), queue, parent)
    assert first_run.dialog is None and outcome[0].pretrained == hub_tag


def test_first_run_downloads_the_weights_with_progress_and_hands_over_ready_settings(
    qtbot, settings, queue, parent, hub_tag, weights_file, monkeypatch
):
    chosen = settings.replace(pretrained=hub_tag)
    with FakeHub(weights_file.read_bytes()) as hub:
        point_hub_at(monkeypatch, hub.url)
        first_run, outcome = start_first_run(qtbot, chosen, queue, parent)
        dialog = first_run.dialog
        assert isinstance(dialog, FirstRunDialog) and dialog.isVisible()
        assert "vf-tiny" in dialog.intro.text() and hub_tag in dialog.intro.text()
        formats: list[str] = []
        job = dialog.download()
        job.progressed.connect(lambda _: formats.append(dialog.progress.format()))
        assert not dialog.download_button.isEnabled()  # no second download while one runs
        qtbot.waitUntil(lambda: bool(outcome), timeout=WAIT_MS)
    size_mb = f"{weights_file.stat().st_size / 1e6:,.0f}"
    assert f"Downloading the weights: {size_mb} of {size_mb} MB" in formats
    assert outcome == [chosen]
    assert ("GET", f"/{REPO}/resolve/main/{FILENAME}") in hub.requests
    assert weights_missing("vf-tiny", hub_tag) is None  # in the cache now: no dialog next time


def test_offline_first_run_says_so_and_a_chosen_weights_file_is_used_instead(
    qtbot, settings, queue, parent, hub_tag, weights_file
):
    dialogs = ScriptedDialogs()
    first_run, outcome = start_first_run(qtbot, settings.replace(pretrained=hub_tag), queue, parent, dialogs)
    dialog = first_run.dialog
    with qtbot.waitSignal(dialog.modelChecked, timeout=WAIT_MS) as checked:
        dialog.download()
    assert checked.args == [False]
    message = dialog.message.text()
    assert message.startswith("You appear to be offline")
    assert "Use a weights file" in message and REPO in message
    assert dialog.download_button.text() == "Try again" and dialog.file_button.isEnabled()
    assert outcome == []  # still asking

    dialogs.weights = None
    assert dialog.use_weights_file() is None  # the chooser was cancelled: nothing happens
    dialogs.weights = str(weights_file)
    dialog.use_weights_file()
    qtbot.waitUntil(lambda: bool(outcome), timeout=WAIT_MS)
    assert outcome[0].pretrained == str(weights_file)


def test_a_bad_weights_file_is_reported_in_the_dialog(qtbot, settings, queue, parent, hub_tag, tmp_path):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"not a checkpoint")
    dialogs = ScriptedDialogs()
    dialogs.weights = str(bad)
    first_run, outcome = start_first_run(qtbot, settings.replace(pretrained=hub_tag), queue, parent, dialogs)
    with qtbot.waitSignal(first_run.dialog.modelChecked, timeout=WAIT_MS) as checked:
        first_run.dialog.use_weights_file()
    assert checked.args == [False]
    assert "cannot load model vf-tiny" in first_run.dialog.message.text()
    assert first_run.dialog.message.text().endswith("the file is not a model checkpoint")
    assert outcome == []


def test_the_app_asks_first_and_opens_the_library_on_the_downloaded_model(
    qtbot, settings, hub_tag, weights_file, monkeypatch
):
    chosen = settings.replace(pretrained=hub_tag)

    def script() -> None:
        qtbot.waitUntil(lambda: main_window() is not None, timeout=WAIT_MS)
        window = main_window()
        qtbot.waitUntil(lambda: window.findChild(FirstRunDialog) is not None, timeout=WAIT_MS)
        assert window.session.state == "closed"  # the library waits for the model
        window.findChild(FirstRunDialog).download_button.click()
        qtbot.waitUntil(lambda: window.session.is_open, timeout=WAIT_MS)
        assert window.session.library.embedder.key == f"vf-tiny/{hub_tag}"
        window.close()

    with FakeHub(weights_file.read_bytes()) as hub:
        point_hub_at(monkeypatch, hub.url)
        assert drive(lambda: run_app(chosen), script) == 0


def test_quitting_the_first_run_dialog_quits_the_app_without_creating_a_library(qtbot, settings, hub_tag):
    def script() -> None:
        qtbot.waitUntil(lambda: main_window() is not None, timeout=WAIT_MS)
        window = main_window()
        qtbot.waitUntil(lambda: window.findChild(FirstRunDialog) is not None, timeout=WAIT_MS)
        window.findChild(FirstRunDialog).quit_button.click()
        qtbot.waitUntil(lambda: main_window() is None, timeout=WAIT_MS)

    assert drive(lambda: run_app(settings.replace(pretrained=hub_tag)), script) == 0
    assert not (settings.data_dir / CATALOG_FILE).exists()
