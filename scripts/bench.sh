#!/usr/bin/env bash
# Set up .venv with the benchmark's dependencies and run it; writes bench/results/.
# `bash scripts/bench.sh --quick` takes a few minutes; without it, the full run takes longer.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-bench.txt
exec .venv/bin/python -m bench "$@"
