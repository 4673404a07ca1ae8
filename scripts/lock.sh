#!/usr/bin/env bash
# Make requirements.lock (the server runtime: requirements.txt and everything it pulls in) and
# requirements-build.lock (the setuptools that builds its source-only packages), every file with its sha256.
# The image installs exactly these (pip install --require-hashes --no-deps); so does scripts/venv.sh.
#   bash scripts/lock.sh           refresh both after editing requirements.txt or requirements-build.txt:
#                                  versions already locked are kept unless the edit needs others
#   bash scripts/lock.sh --upgrade every package to its newest version allowed by the pins
#   bash scripts/lock.sh --check   exit 1 if the committed locks are not what this command makes
# Resolved for the image: CPython 3.11 on Linux x86_64 (glibc 2.28 or newer). The hashes cover every file of each
# locked version, and the same resolution is checked for aarch64, so an arm64 build installs the same versions.
# Needs the package registry (pip's index); the lock tool itself (requirements-lock.txt) goes into .venv-lock.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-refresh}
case "$mode" in
  refresh | --upgrade | --check) ;;
  *) echo "usage: bash scripts/lock.sh [--upgrade | --check]" >&2; exit 2 ;;
esac

if ! .venv-lock/bin/python -m pip install --quiet --require-virtualenv -r requirements-lock.txt 2>/dev/null; then
  python3 -m venv .venv-lock
  .venv-lock/bin/python -m pip install --quiet -r requirements-lock.txt
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# compile INPUT OUTPUT PLATFORM [uv options]: versions already in OUTPUT are preferred (uv reads it first).
compile() {
  local input=$1 output=$2 platform=$3
  shift 3
  .venv-lock/bin/uv pip compile "$input" --output-file "$output" --generate-hashes --quiet \
    --python-version 3.11 --python-platform "$platform" --custom-compile-command "bash scripts/lock.sh" "$@"
}

for name in requirements requirements-build; do
  lock="$scratch/$name.lock"
  [ "$mode" = --upgrade ] || cp "$name.lock" "$lock" 2>/dev/null || true
  upgrade=()
  [ "$mode" = --upgrade ] && upgrade=(--upgrade)
  compile "$name.txt" "$lock" x86_64-manylinux_2_28 "${upgrade[@]}"
  cp "$lock" "$scratch/$name.aarch64.lock"
  compile "$name.txt" "$scratch/$name.aarch64.lock" aarch64-manylinux_2_28
  if ! cmp -s "$lock" "$scratch/$name.aarch64.lock"; then
    diff "$lock" "$scratch/$name.aarch64.lock" >&2 || true
    echo "$name.lock: aarch64 resolves differently (above); the lock would cover x86_64 only" >&2
    exit 1
  fi
  if [ "$mode" = --check ]; then
    if ! cmp -s "$lock" "$name.lock"; then
      diff "$name.lock" "$lock" >&2 || true
      echo "$name.lock is not what 'bash scripts/lock.sh' makes from $name.txt (diff above): run it and commit" >&2
      exit 1
    fi
  else
    cp "$lock" "$name.lock"
  fi
done
[ "$mode" = --check ] && echo "requirements.lock and requirements-build.lock are up to date" || echo "wrote requirements.lock and requirements-build.lock"
