#!/usr/bin/env bash
# Set up .venv and run the test suite. Tests needing the FracAtlas copy find it through
# $MONAIFRAC_FRACATLAS or ../shared/data/fracatlas and skip where it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
