#!/usr/bin/env sh
# Add visualfinder to your application menu and to "Open with" for images (this user only,
# no root): ~/.local/share/applications/visualfinder.desktop and the icon in hicolor sizes.
#   ./install.sh              install (next to a bundle: that bundle; else `visualfinder` on PATH)
#   ./install.sh --uninstall  remove them again
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -x "$here/visualfinder" ] && [ -d "$here/_internal" ]; then
    exec "$here/visualfinder" install-desktop "$@"            # inside the PyInstaller bundle
elif command -v visualfinder >/dev/null 2>&1; then
    exec visualfinder install-desktop "$@"                    # pip install
elif [ -f "$here/../../visualfinder/__main__.py" ]; then
    cd "$here/../.." && exec "${PYTHON:-python3}" -m visualfinder install-desktop "$@"   # a source checkout
else
    echo "install.sh: cannot find visualfinder; install it first (see README, Packaging)" >&2
    exit 1
fi
