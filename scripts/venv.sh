# Sourced by the other scripts: `setup_venv FILE` makes .venv and installs the pinned requirements FILE into it.
setup_venv() {
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$1"
}
