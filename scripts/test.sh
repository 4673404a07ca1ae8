#!/usr/bin/env bash
# Set up a virtualenv (.venv) with the pinned dependencies and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k segmenter`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
