#!/usr/bin/env bash
# Set up .venv with the pinned test dependencies, install the system tools the tests use, and run the whole suite.
# Extra arguments go to pytest: `bash scripts/test.sh -m "not e2e"` runs only the unit tests (seconds),
# `bash scripts/test.sh -k segmenter` one topic.
set -euo pipefail
cd "$(dirname "$0")/.."

# ffmpeg (ffprobe and ffmpeg decode every format), Debian's chromium (the playground's browser test),
# haproxy (the rate limit behind a real proxy; replicas behind deploy/haproxy/haproxy.cfg) and git-lfs (the
# deployment guide's push to a Space) are needed; a Japanese font only makes the playground's screenshots readable.
missing=()
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
git lfs version >/dev/null 2>&1 || missing+=(git-lfs)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    dpkg-query -W -f='${Status}' fonts-ipafont-gothic 2>/dev/null | grep -q "ok installed" || missing+=(fonts-ipafont-gothic)
    echo "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "the tests need these system packages: ${missing[*]} (on Debian or Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

source scripts/venv.sh
setup_venv requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
