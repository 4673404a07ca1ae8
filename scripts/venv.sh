# Sourced by the other scripts: `setup_venv FILE` makes .venv and installs the pinned requirements FILE into it.

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

setup_venv() {
  check_compiler
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$1"
}
