#!/usr/bin/env bash
# Create .venv and install monaifrac (editable) with its dependencies and the test tools.
# torch goes first and pinned: `torch==2.13.0` is a CPU wheel on these machines' disk, while
# an unpinned torch (asked for by monai) would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.monaifrac-installed
want=$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0  # same dependencies as last time: nothing to do
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
