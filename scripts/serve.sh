#!/usr/bin/env bash
# Set up a virtualenv (.venv) with the pinned dependencies and start the server.
# Arguments go to server.py: `bash scripts/serve.sh --demo` serves the generated demo voice offline.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
exec .venv/bin/python server.py "$@"
