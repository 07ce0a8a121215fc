#!/usr/bin/env bash
# Build the onedir bundle: dist/visualfinder/ (the `visualfinder` executable, its libraries,
# Qt plugins, open_clip configs, vf-tiny and the app's resources; on macOS also visualfinder.app).
#   packaging/build.sh            (PYTHON=/path/to/python to pick the environment)
# Needs the app and PyInstaller in that environment: pip install '.[packaging]'.
# The bundle holds whichever torch the environment has: a CPU-only torch gives a bundle of
# ~1 GB, a CUDA torch one of several GB (see README, Packaging).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m PyInstaller --version >/dev/null 2>&1 || {
    echo "build.sh: PyInstaller is missing: $PYTHON -m pip install '.[packaging]'" >&2
    exit 1
}
rm -rf build/icons
"$PYTHON" -m visualfinder install-desktop --icons build/icons
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/visualfinder.spec
if [ "$(uname -s)" = Linux ]; then
    cp packaging/linux/install.sh dist/visualfinder/install.sh
fi
echo "built dist/visualfinder ($(du -sh dist/visualfinder | cut -f1))"
