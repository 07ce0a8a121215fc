"""The built bundle (packaging/build.sh) runs on its own: the CLI indexes and searches a folder
with vf-tiny, the app starts offscreen with an image as its query and exits cleanly on Ctrl+C,
and the bundled install script points the launcher at the bundle.

Building takes many minutes, so this runs only when asked:
    VISUALFINDER_BUNDLE=dist/visualfinder pytest tests/packaging -m bundle
(or packaging/test_bundle.sh, which builds first when needed)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from imagegen import make_catalog

import visualfinder

BUNDLE = os.environ.get("VISUALFINDER_BUNDLE", "")
pytestmark = [
    pytest.mark.bundle,
    pytest.mark.skipif(not BUNDLE, reason="set VISUALFINDER_BUNDLE=dist/visualfinder to test a built bundle"),
]
ROOT = Path(visualfinder.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle() -> Path:
    path = Path(BUNDLE)
    path = path if path.is_absolute() else ROOT / path
    exe = path / ("visualfinder.exe" if os.name == "nt" else "visualfinder")
    assert exe.is_file(), f"no bundle at {path}: run packaging/build.sh"
    return exe


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """Nothing from the source tree or the test's virtualenv: only what the bundle carries."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "VISUALFINDER_"))
    }
    env.update(
        QT_QPA_PLATFORM="offscreen",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "share"),
        HF_HUB_OFFLINE="1",
        VISUALFINDER_DATA_DIR=str(tmp_path / "library"),
        VISUALFINDER_MODEL="vf-tiny",
        VISUALFINDER_PRETRAINED="none",
        VISUALFINDER_DEVICE="cpu",
    )
    return env


def run(exe: Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=exe.parent.parent)  # fmt: skip


def test_bundle_answers_its_version(bundle, env):
    result = run(bundle, env, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"visualfinder {visualfinder.__version__}"


def test_bundle_indexes_a_folder_with_vf_tiny_and_finds_an_image(bundle, env, tmp_path):
    files = make_catalog(tmp_path / "catalog", 10)
    started = time.perf_counter()
    result = run(bundle, env, "index", str(tmp_path / "catalog"))
    assert result.returncode == 0, result.stderr
    print(f"bundle: index of 10 images in {time.perf_counter() - started:.1f} s (start-up included)")
    status = json.loads(run(bundle, env, "status", "--json").stdout)
    assert status["ok"] == 10 and status["model_key"].startswith("vf-tiny/")
    found = json.loads(run(bundle, env, "search", str(files[4]), "--json", "-k", "3").stdout)
    assert Path(found[0]["path"]) == files[4]
    assert "Traceback" not in result.stderr


def test_bundle_opens_the_app_offscreen_with_an_image_and_exits_cleanly_on_ctrl_c(bundle, env, tmp_path):
    files = make_catalog(tmp_path / "catalog", 6)
    assert run(bundle, env, "index", str(tmp_path / "catalog")).returncode == 0
    process = subprocess.Popen([str(bundle), "-v", str(files[2])], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    output = ""
    try:
        deadline = time.monotonic() + 180
        lines = []
        # The model loads once the window has opened the library: the app is up and running.
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "loaded vf-tiny" in line:
                break
        output = "".join(lines)
        assert process.poll() is None, output
        assert "loaded vf-tiny" in output, output
        time.sleep(2.0)  # the query image's search runs
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        output += rest
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    assert (tmp_path / "config" / "visualfinder" / "visualfinder.ini").is_file()  # window state saved


def test_bundled_install_script_points_the_launcher_at_the_bundle(bundle, env, tmp_path):
    script = bundle.parent / "install.sh"
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    launcher = tmp_path / "share" / "applications" / "visualfinder.desktop"
    exec_line = next(line for line in launcher.read_text().splitlines() if line.startswith("Exec="))
    assert shlex.split(exec_line[len("Exec=") :]) == [str(bundle.resolve()), "%F"]
    assert (tmp_path / "share" / "icons" / "hicolor" / "256x256" / "apps" / "visualfinder.png").is_file()
