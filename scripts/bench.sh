#!/usr/bin/env bash
# Set up .venv with the benchmark's dependencies and run it; writes bench/results/.
# `bash scripts/bench.sh --quick` takes a few minutes; without it, the full run takes longer.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
setup_venv requirements-bench.txt
exec .venv/bin/python -m bench "$@"
