#!/usr/bin/env bash
# Set up a virtualenv (.venv) with the pinned dependencies and start the server.
# Arguments go to server.py: `bash scripts/serve.sh --demo` serves the generated demo voice offline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
setup_venv requirements.txt
exec .venv/bin/python server.py "$@"
