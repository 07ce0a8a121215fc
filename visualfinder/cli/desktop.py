"""`visualfinder install-desktop`: the launcher and icons for the desktop (Linux), and the icon
files the bundles need (`--icons DIR`). Qt renders the icons, so the module loads only when run."""

from __future__ import annotations

import argparse
from pathlib import Path

from visualfinder.cli.common import command
from visualfinder.config import Settings


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "install-desktop",
        help="add visualfinder to your application menu and 'Open with' (Linux, this user only)",
    )
    p.add_argument("--uninstall", action="store_true", help="remove the launcher and icons again")
    p.add_argument("--prefix", metavar="DIR",
                   help="data folder to install into (default: $XDG_DATA_HOME or ~/.local/share)")  # fmt: skip
    p.add_argument("--icons", metavar="DIR",
                   help="only write the icons (hicolor PNGs, .ico, .icns) into DIR, e.g. for a bundle")  # fmt: skip


@command("install-desktop")
def cmd_install_desktop(args: argparse.Namespace, settings: Settings) -> int:
    from visualfinder.gui import desktop_entry  # Qt draws the icons: imported only for this command

    app = desktop_entry.icon_application()  # noqa: F841 - kept alive while the icons are drawn

    if args.icons:
        root = Path(args.icons)
        written = desktop_entry.write_hicolor_icons(root) + desktop_entry.write_bundle_icons(root)
        print(f"wrote {len(written)} icon files to {root}")
        return 0
    home = Path(args.prefix) if args.prefix else None
    if args.uninstall:
        removed = desktop_entry.uninstall(home)
        print(f"removed {len(removed)} files" if removed else "visualfinder was not installed there")
        return 0
    written = desktop_entry.install(home)
    launcher = next(p for p in written if p.suffix == ".desktop")
    print(f"installed {launcher} and {len(written) - 1} icon files")
    print("visualfinder is in your application menu and under 'Open with' for images.")
    return 0
