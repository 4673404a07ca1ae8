"""The image and the test venv install the same bits every time: requirements.lock read as data (issue 23, item 7).

`bash scripts/lock.sh` makes the locks from requirements.txt and requirements-build.txt (it needs the package
registry; `--check` says whether the committed locks are what it makes). Here, offline: every entry is pinned and
hashed, every top-level pin is locked at its own version, the lock is closed (every locked package's own
requirements are locked too), the installers use it with hashes, and this venv holds exactly the locked versions.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.test_dockerfile import DOCKERFILE

ROOT = Path(__file__).resolve().parent.parent
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)")
#: What the image is locked for (scripts/lock.sh): markers of CPython 3.11 on Linux x86_64.
IMAGE_PLATFORM = {**default_environment(), "python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Canonical name -> (version, sha256 hashes) of every entry of a lock file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            name = canonicalize_name(match["name"])
            entries[name] = (match["version"], [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            entries[name][1].append(digest)
    return entries


def pins(path: Path) -> dict[str, str]:
    """Canonical name -> version of every `name==version` line of a requirements file (comments dropped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = ENTRY.match(line.split("#", 1)[0].strip())
        if match:
            found[canonicalize_name(match["name"])] = match["version"]
    return found


RUNTIME = locked(ROOT / "requirements.lock")
BUILD = locked(ROOT / "requirements-build.lock")


def test_every_entry_is_pinned_and_hashed() -> None:
    assert len(RUNTIME) > len(pins(ROOT / "requirements.txt")), "the lock holds the transitive packages too"
    for name, (version, hashes) in {**RUNTIME, **BUILD}.items():
        assert hashes, f"{name}=={version} has no --hash"
    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line and line[0].isalnum()]
    assert all(ENTRY.match(line) for line in lines), "every entry is name==version"


def test_every_top_level_pin_is_locked_at_its_version() -> None:
    for source, lock in (("requirements.txt", RUNTIME), ("requirements-build.txt", BUILD)):
        for name, version in pins(ROOT / source).items():
            assert name in lock, f"{name} of {source} is not in its lock: run bash scripts/lock.sh"
            assert lock[name][0] == version, f"{source} pins {name}=={version}, the lock has {lock[name][0]}"


def test_the_lock_is_closed_under_each_packages_requirements() -> None:
    """--no-deps installs nothing else, so a requirement missing from the lock would be missing from the image."""
    for name, (version, _) in RUNTIME.items():
        distribution = importlib.metadata.distribution(name)
        assert distribution.version == version, f"this venv has {name} {distribution.version}, the lock {version}"
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({**IMAGE_PLATFORM, "extra": ""}):
                continue
            needed = canonicalize_name(requirement.name)
            assert needed in RUNTIME, f"{name} needs {requirement}, which requirements.lock does not hold"
            assert requirement.specifier.contains(RUNTIME[needed][0], prereleases=True), (name, requirement)


def test_the_image_installs_exactly_the_locks_with_hashes() -> None:
    installs = [args for stage in DOCKERFILE.values() for kind, args in stage if kind == "RUN" and "pip install" in args]
    assert installs, "the Dockerfile installs packages"
    commands = [part.strip() for args in installs for part in args.split("&&") if "pip install" in part]
    assert any("-r /tmp/requirements.lock" in command for command in commands)
    for command in commands:
        assert "--require-hashes" in command and "--no-deps" in command, command
        assert re.search(r"-r \S+\.lock$", command), f"installs something other than a lock file: {command}"


def test_the_venv_scripts_install_the_runtime_from_the_locks() -> None:
    script = (ROOT / "scripts" / "venv.sh").read_text()
    assert re.search(r"pip install .*--require-hashes --no-deps .*-r requirements\.lock", script)
    assert re.search(r"pip install .*--require-hashes --no-deps -r requirements-build\.lock", script)
