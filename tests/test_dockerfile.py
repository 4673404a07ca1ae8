"""The image runs as uid 1000 and cannot rewrite what it runs: the Dockerfile read as data.

container-check (.ci/run) builds and boots the image but cannot run a command in it, so what uid 1000 may
write is checked here, in the instructions that decide it: code, models and GenieData reach the final stage
root-owned (no --chown), read-only modes are set where they are made, and only ~/.cache is given to the user.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuation lines joined, comments dropped, blanks collapsed."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(" ".join(current.split()))
        current = ""
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in logical]


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Stage name (the last is "final") -> its instructions after FROM."""
    found: dict[str, list[tuple[str, str]]] = {}
    name = ""
    for instruction, arguments in instructions(text):
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else "final"
            found[name] = []
        else:
            found[name].append((instruction, arguments))
    return found


DOCKERFILE = stages((ROOT / "Dockerfile").read_text())
FINAL = DOCKERFILE["final"]
READ_ONLY = "chmod -R u=rwX,go=rX"


def test_final_stage_runs_as_uid_1000() -> None:
    users = [arguments for instruction, arguments in FINAL if instruction == "USER"]
    assert users and users[-1].split(":")[0] == "1000", users


def test_no_copy_into_the_final_stage_hands_files_to_the_user() -> None:
    copies = [arguments for instruction, arguments in FINAL if instruction in ("COPY", "ADD")]
    assert copies, "the final stage copies nothing?"
    for arguments in copies:
        assert "--chown" not in arguments and "--chmod" not in arguments, arguments
    sources = " ".join(copies)
    for what in ("/opt/venv", "/home/user/GenieData/", "/app/code/", "/app/models/"):
        assert what in sources, f"{what} is not copied into the final stage"


def test_the_only_path_given_to_the_user_is_the_cache() -> None:
    """No chown/install -o user except ~/.cache, and the home itself back to root (no renaming app/ away)."""
    runs = " && ".join(arguments for instruction, arguments in FINAL if instruction == "RUN")
    commands = [shlex.split(command) for command in runs.split("&&")]
    given = []
    for words in commands:
        if words[0] == "chown":
            given.append((words[-2], words[-1]))
        if words[0] == "install" and "-o" in words:
            given.append((words[words.index("-o") + 1], words[-1]))
    assert ("root:root", "/home/user") in given, given
    assert [path for owner, path in given if not owner.startswith("root")] == ["/home/user/.cache"], given


def test_code_models_and_genie_data_are_made_read_only_where_they_are_built() -> None:
    for stage, path in (("genie-data", "/home/user/GenieData"), ("app", "/app")):
        runs = [arguments for instruction, arguments in DOCKERFILE[stage] if instruction == "RUN"]
        assert any(re.search(rf"{re.escape(READ_ONLY)} {re.escape(path)}$", run) for run in runs), (stage, runs)
    # The predefined voice is installed in the app stage, before that chmod, so it is read-only too.
    app_runs = [arguments for instruction, arguments in DOCKERFILE["app"] if instruction == "RUN"]
    predefined = next(run for run in app_runs if "engine.tools.predefined" in run)
    assert predefined.index("engine.tools.predefined") < predefined.index(READ_ONLY)


def test_the_parser_reads_continuations_and_stages() -> None:
    parsed = stages("FROM a AS one\nRUN x \\\n    # note\n    && y\nFROM b\nUSER 1000:1000\n")
    assert parsed == {"one": [("RUN", "x && y")], "final": [("USER", "1000:1000")]}
