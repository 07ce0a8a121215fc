"""Icons and desktop integration files: shipped in the package, drawn for every action, kept in step."""

from __future__ import annotations

import configparser
import fnmatch
import sys
from pathlib import Path

from visualfinder.gui import icons

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_runtime_resource_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["visualfinder"]
    package = ROOT / "visualfinder"
    shipped = [
        p.relative_to(package).as_posix() for p in (package / "gui" / "resources").rglob("*") if p.is_file()
    ]
    assert shipped
    missing = [f for f in shipped if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert missing == []


def test_the_desktop_icon_is_the_app_icon():
    assert (ROOT / "resources" / "visualfinder.svg").read_bytes() == icons.APP_ICON.read_bytes()


def test_desktop_entry_launches_the_app():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "resources" / "visualfinder.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"].split()[0] == "visualfinder"
    assert section["Icon"] == "visualfinder"


def test_every_icon_renders_in_the_palette_colour(qapp):
    names = sorted(p.stem for p in icons.ICON_DIR.glob("*.svg"))
    assert {"open-image", "paste", "folder-add", "export", "settings", "find-similar", "crop"} <= set(names)
    for name in names:
        image = icons.pixmap(name, 24, "#ff0000").toImage()
        drawn = [
            image.pixelColor(x, y)
            for x in range(24)
            for y in range(24)
            if image.pixelColor(x, y).alpha() > 200
        ]
        assert drawn, f"{name} draws nothing"
        assert all(c.red() > 200 and c.green() < 60 and c.blue() < 60 for c in drawn), name
    assert not icons.app_icon().isNull()
