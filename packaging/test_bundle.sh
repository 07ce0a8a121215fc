#!/usr/bin/env bash
# Build the bundle if there is none (or with --rebuild), then test it: it starts offscreen,
# indexes and searches a folder with vf-tiny through its CLI entry, opens the app with an image
# and exits cleanly, and its install script points the launcher at it. Reports the bundle size.
#   packaging/test_bundle.sh [--rebuild]          (PYTHON=/path/to/python to pick the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--rebuild" ] || [ ! -x dist/visualfinder/visualfinder ]; then
    PYTHON="$PYTHON" packaging/build.sh
fi
VISUALFINDER_BUNDLE=dist/visualfinder "$PYTHON" -m pytest -q -p no:cacheprovider -s -m bundle tests/packaging
echo "bundle size: $(du -sh dist/visualfinder | cut -f1)"
"$PYTHON" packaging/bundle_size.py dist/visualfinder
