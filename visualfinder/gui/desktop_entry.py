"""Desktop integration: the freedesktop launcher (.desktop), the icon in hicolor sizes rendered
from the app's SVG, Windows .ico / macOS .icns for the bundles, and installing both for one user.

`resources/visualfinder.desktop` in the repository is `desktop_entry()` written out (a test keeps
them equal); an install writes it with the absolute command of this installation, because a
desktop session's PATH rarely holds a virtualenv or an unpacked bundle.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

from visualfinder.gui.icons import APP_ICON

log = logging.getLogger(__name__)

APP_ID = "visualfinder"
# The sizes icon themes look for (hicolor's own list); 512 for high-DPI docks and app stores.
HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# The types the app reads, named one by one for desktops that do not expand "image/*" (the
# spec has no wildcards; KDE and others honour it, so it stays for the types not listed).
MIME_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff",
              "image/heic", "image/heif", "image/avif", "image/*")  # fmt: skip

DESKTOP_FIELDS: tuple[tuple[str, str], ...] = (
    ("Type", "Application"),
    ("Version", "1.5"),
    ("Name", "visualfinder"),
    ("GenericName", "Visual Product Search"),
    ("Comment", "Find similar product images in your own catalog: drop an image, see the closest matches"),
    ("Exec", "{exec} %F"),
    ("TryExec", "{try_exec}"),
    ("Icon", APP_ID),
    ("Terminal", "false"),
    ("Categories", "Graphics;Viewer;Office;Qt;"),
    ("MimeType", "".join(f"{m};" for m in MIME_TYPES)),
    ("Keywords", "image;search;similar;product;catalog;CLIP;lens;"),
    ("StartupNotify", "true"),
    ("StartupWMClass", APP_ID),
)


def desktop_entry(command: Sequence[str] = (APP_ID,)) -> str:
    """The launcher's text; `command` starts the app (the file arguments follow it)."""
    exec_line = " ".join(_desktop_quote(part) for part in command)
    lines = ["[Desktop Entry]"]
    for key, value in DESKTOP_FIELDS:
        lines.append(f"{key}={value.format(exec=exec_line, try_exec=command[0])}")
    return "\n".join(lines) + "\n"


def _desktop_quote(arg: str) -> str:
    """Quote an Exec argument the way the Desktop Entry spec wants (double quotes, escapes)."""
    if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`=%"):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'.replace("%", "%%")


def launch_command() -> list[str]:
    """How this installation starts the app: the bundle's executable, the `visualfinder` script
    beside this Python (a virtualenv), the one on PATH, or this Python with `-m visualfinder`."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).resolve())]
    beside = Path(sys.executable).with_name(APP_ID + (".exe" if os.name == "nt" else ""))
    if beside.is_file():
        return [str(beside)]
    found = shutil.which(APP_ID)
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", APP_ID]


# --- icons -----------------------------------------------------------------------------------


def render_icon(size: int, svg: Path = APP_ICON) -> QImage:
    """The app icon at `size` x `size` pixels, transparent around it."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"cannot read the icon {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def write_hicolor_icons(root: Path, svg: Path = APP_ICON, sizes: Sequence[int] = HICOLOR_SIZES) -> list[Path]:
    """`root/hicolor/NxN/apps/visualfinder.png` for each size, plus the SVG as `scalable`."""
    written = []
    for size in sizes:
        path = root / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not render_icon(size, svg).save(str(path), "PNG"):
            raise OSError(f"cannot write {path}")
        written.append(path)
    scalable = root / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    written.append(scalable)
    return written


def write_bundle_icons(dest: Path, svg: Path = APP_ICON) -> list[Path]:
    """`visualfinder.ico` (Windows) and `visualfinder.icns` (macOS), drawn at each size
    rather than scaled down from one large image, so the small ones stay sharp."""
    dest.mkdir(parents=True, exist_ok=True)
    frames = {size: _to_pillow(render_icon(size, svg)) for size in (*ICO_SIZES, 512, 1024)}
    ico = dest / f"{APP_ID}.ico"
    frames[256].save(ico, sizes=[(s, s) for s in ICO_SIZES],
                     append_images=[frames[s] for s in ICO_SIZES if s != 256])  # fmt: skip
    icns = dest / f"{APP_ID}.icns"
    frames[1024].save(icns, append_images=[frames[s] for s in (16, 32, 64, 128, 256, 512)])
    return [ico, icns]


def _to_pillow(image: QImage):
    from PIL import Image

    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    return Image.frombuffer("RGBA", (rgba.width(), rgba.height()), bytes(rgba.constBits()), "raw", "RGBA",
                            rgba.bytesPerLine(), 1).copy()  # fmt: skip


# --- install for this user -------------------------------------------------------------------


def data_home() -> Path:
    """$XDG_DATA_HOME, or ~/.local/share."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def install(home: Path | None = None, command: Sequence[str] | None = None) -> list[Path]:
    """Add the launcher and its icons to the user's application menu (no root needed).

    Returns the files written; the desktop's caches are refreshed where the tools exist."""
    home = home or data_home()
    written = write_hicolor_icons(home / "icons")
    launcher = home / "applications" / f"{APP_ID}.desktop"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(desktop_entry(command or launch_command()), encoding="utf-8")
    written.append(launcher)
    _refresh_caches(home)
    return written


def uninstall(home: Path | None = None) -> list[Path]:
    """Remove what `install` wrote; returns the files removed."""
    home = home or data_home()
    candidates = [home / "applications" / f"{APP_ID}.desktop"]
    candidates += [home / "icons" / "hicolor" / f"{s}x{s}" / "apps" / f"{APP_ID}.png" for s in HICOLOR_SIZES]
    candidates.append(home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg")
    removed = []
    for path in candidates:
        if path.is_file():
            path.unlink()
            removed.append(path)
    _refresh_caches(home)
    return removed


def _refresh_caches(home: Path) -> None:
    """Menus and "Open with" lists read caches; they are rebuilt on login anyway, so a missing
    tool or a failure is only logged."""
    for tool in (["update-desktop-database", "-q", str(home / "applications")],
                 ["gtk-update-icon-cache", "-q", "-t", "-f", str(home / "icons" / "hicolor")]):  # fmt: skip
        if shutil.which(tool[0]) is None:
            continue
        try:
            subprocess.run(tool, check=False, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("%s failed: %s", shlex.join(tool), exc)


def icon_application():
    """Icons are drawn with Qt, which wants an application object; no window is shown, so
    a machine without a display (a build server) uses the offscreen platform."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform.startswith(
        "linux"
    ):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
