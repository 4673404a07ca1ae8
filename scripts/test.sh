#!/usr/bin/env bash
# Set up a virtualenv (.venv) with the pinned dependencies and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k segmenter`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
setup_venv requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
