# Sourced by the other scripts: `setup_venv FILE` makes .venv and installs the pinned requirements FILE into it,
# with the server runtime taken from the lock files the image installs (scripts/lock.sh makes them).

# jieba_fast (a dependency of genie-tts) ships only as source, so pip compiles it: say so before pip fails.
check_compiler() {
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import jieba_fast' >/dev/null 2>&1; then
    return 0  # already built into this .venv
  fi
  for compiler in cc gcc clang; do
    command -v "$compiler" >/dev/null 2>&1 && return 0
  done
  echo "no C compiler found: pip must build jieba_fast from source. Install one first: Debian/Ubuntu" \
    "'sudo apt-get install gcc python3-dev', Fedora 'sudo dnf install gcc python3-devel', macOS" \
    "'xcode-select --install', Windows the Microsoft C++ Build Tools (or use WSL)." >&2
  return 1
}

# The lock files are for CPython 3.11: another version would fail in pip with a far less clear message.
# PYTHON names the interpreter when `python3` is another version (PYTHON=python3.11).
check_python() {
  local python="${PYTHON:-python3}" version
  if ! version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then
    echo "no Python found as '$python': the server needs Python 3.11 (install it, or set PYTHON to its command)." >&2
    return 1
  fi
  if [ "$version" != 3.11 ]; then
    echo "'$python' is Python $version; the server needs Python 3.11 (requirements.lock is for CPython 3.11)." \
      "Install 3.11 and run again with PYTHON=python3.11, or remove .venv if it was made with another version." >&2
    return 1
  fi
}

setup_venv() {
  check_python
  check_compiler
  if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo ".venv was made with another Python than 3.11: remove it (rm -rf .venv) and run again." >&2
    return 1
  fi
  "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # The runtime exactly as the image gets it: every package at its locked version, each file's hash checked.
  .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements-build.lock
  .venv/bin/python -m pip install --quiet --require-hashes --no-deps --no-build-isolation -r requirements.lock
  if [ "$1" != requirements.txt ]; then
    # FILE's own packages (tests, benchmark, voice preparation), held to the locked versions (names and versions
    # only: a hash in a constraints file would make pip demand hashes for everything) so none moves the runtime.
    local pins
    pins=$(mktemp)
    grep -oE '^[A-Za-z0-9._-]+==[^ ]+' requirements.lock >"$pins"
    .venv/bin/python -m pip install --quiet -r "$1" -c "$pins"
    rm -f "$pins"
  fi
}
