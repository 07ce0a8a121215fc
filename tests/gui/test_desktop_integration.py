"""Linux desktop integration: the launcher (MimeType image/* for "Open with"), the icon in
hicolor sizes drawn from the SVG, the bundles' .ico/.icns, and installing for one user."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import visualfinder
from visualfinder.gui.desktop_entry import (
    HICOLOR_SIZES,
    ICO_SIZES,
    desktop_entry,
    install,
    uninstall,
    write_bundle_icons,
    write_hicolor_icons,
)
from visualfinder.gui.icons import APP_ICON

ROOT = Path(visualfinder.__file__).resolve().parent.parent


def entry_fields(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0] == "[Desktop Entry]"
    pairs = [line.split("=", 1) for line in lines[1:] if line and not line.startswith("#")]
    fields = dict(pairs)
    assert len(fields) == len(pairs), "a key appears twice"
    return fields


def test_the_repositorys_desktop_file_is_the_generated_launcher():
    assert (ROOT / "resources" / "visualfinder.desktop").read_text(encoding="utf-8") == desktop_entry()
    assert (ROOT / "resources" / "visualfinder.svg").read_bytes() == APP_ICON.read_bytes()


def test_the_launcher_opens_images_with_the_app():
    fields = entry_fields(desktop_entry())
    assert fields["Type"] == "Application" and fields["Name"] == "visualfinder"
    assert fields["Exec"] == "visualfinder %F"  # the files chosen in "Open with" follow the command
    assert fields["TryExec"] == "visualfinder" and fields["Icon"] == "visualfinder"
    assert fields["Terminal"] == "false"
    mime = fields["MimeType"].split(";")
    assert mime[-1] == "" and "image/*" in mime and "image/jpeg" in mime and "image/png" in mime
    assert fields["Categories"].endswith(";")


def test_a_command_with_spaces_is_quoted_for_the_desktop():
    fields = entry_fields(desktop_entry(["/opt/visual finder/visualfinder", "-m", "x%y"]))
    assert fields["Exec"] == '"/opt/visual finder/visualfinder" -m "x%%y" %F'
    assert shlex.split(fields["Exec"].replace("%%", "%"))[0] == "/opt/visual finder/visualfinder"


def test_hicolor_icons_are_drawn_at_every_size_from_the_svg(qapp, tmp_path):
    written = write_hicolor_icons(tmp_path)
    for size in HICOLOR_SIZES:
        path = tmp_path / "hicolor" / f"{size}x{size}" / "apps" / "visualfinder.png"
        assert path in written
        with Image.open(path) as image:
            assert image.size == (size, size) and image.mode == "RGBA"
            alpha = image.getchannel("A")
            assert alpha.getpixel((size // 2, size // 2)) == 255  # the drawing
            assert alpha.getpixel((0, 0)) == 0  # the rounded corner stays transparent
    assert (
        tmp_path / "hicolor" / "scalable" / "apps" / "visualfinder.svg"
    ).read_bytes() == APP_ICON.read_bytes()


def test_bundle_icons_hold_every_size(qapp, tmp_path):
    ico, icns = write_bundle_icons(tmp_path)
    with Image.open(ico) as image:
        assert set(image.info["sizes"]) == {(s, s) for s in ICO_SIZES}
    with Image.open(icns) as image:
        assert image.format == "ICNS" and (512, 512) in {size[:2] for size in image.info["sizes"]}


def test_install_writes_the_launcher_with_this_installations_command_and_uninstall_removes_it(qapp, tmp_path):
    home = tmp_path / "share"
    written = install(home, ["/opt/visual finder/visualfinder"])
    launcher = home / "applications" / "visualfinder.desktop"
    assert launcher in written and all(path.is_file() for path in written)
    assert entry_fields(launcher.read_text())["Exec"] == '"/opt/visual finder/visualfinder" %F'
    assert (home / "icons" / "hicolor" / "48x48" / "apps" / "visualfinder.png").is_file()
    removed = uninstall(home)
    assert set(removed) == set(written)
    assert not launcher.exists()


@pytest.fixture
def script_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def test_install_script_adds_the_app_to_the_users_menu(script_env, tmp_path):
    script = ROOT / "packaging" / "linux" / "install.sh"
    result = subprocess.run(["sh", str(script)], env=script_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    launcher = tmp_path / "xdg" / "applications" / "visualfinder.desktop"
    assert "installed" in result.stdout and str(launcher) in result.stdout
    command = shlex.split(entry_fields(launcher.read_text())["Exec"])[:-1]
    assert Path(command[0]).is_absolute() and Path(command[0]).exists()
    # The launcher's command really is this app: it answers --version.
    version = subprocess.run(
        [*command, "--version"], env=script_env, capture_output=True, text=True, timeout=120
    )
    assert version.stdout.strip() == f"visualfinder {visualfinder.__version__}"

    result = subprocess.run(["sh", str(script), "--uninstall"], env=script_env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0 and not launcher.exists()


def test_install_desktop_icons_writes_what_a_bundle_needs(cli, tmp_path):
    result = cli("install-desktop", "--icons", str(tmp_path / "icons"), env={"QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    for name in ("visualfinder.ico", "visualfinder.icns", "hicolor/256x256/apps/visualfinder.png"):
        assert (tmp_path / "icons" / name).is_file()
