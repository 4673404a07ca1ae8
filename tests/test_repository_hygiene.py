"""What a new user's `git add .` and `docker build` must leave out (issue: a 1.6 GB conversion virtualenv and
private training checkpoints were pushed to a Space), asked of git itself and of the .dockerignore patterns."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.server_process import ROOT

PRIVATE_OR_HUGE = [
    ".venv-convert/lib/python3.11/site-packages/torch/__init__.py",
    ".venv-py311/bin/python",
    "venv-gpt/bin/python",
    "my-voice-e15.ckpt",
    "checkpoints/my-voice_e8_s200.pth",
    "models/my-voice/GPT_weights/my-voice-e15.ckpt",
    ".env",
]


@pytest.mark.parametrize("path", PRIVATE_OR_HUGE)
def test_git_ignores_it(path: str) -> None:
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT)
    assert result.returncode == 0, f"git would commit {path}"


@pytest.mark.parametrize("path", [".env.example", "server.py", "models/README.md"])
def test_git_keeps_what_belongs(path: str) -> None:
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT)
    assert result.returncode == 1, f"git would ignore {path}"


def docker_pattern(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore matching (Go's filepath.Match plus `**`): `*` and `?` stay within a folder name,
    `**/` stands for any number of folders, none included."""
    regex = ""
    for piece in re.split(r"(\*\*/|\*|\?)", pattern.strip("/")):
        regex += {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece))
    return re.compile(regex)


def dockerignored(path: str) -> bool:
    """A path is left out when it or one of its parent folders matches; the last matching pattern wins."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    parts = path.split("/")
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    ignored = False
    for line in lines:
        if not line or line.startswith("#"):
            continue
        negated, pattern = line.startswith("!"), docker_pattern(line.removeprefix("!"))
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


@pytest.mark.parametrize("path", PRIVATE_OR_HUGE)
def test_the_docker_build_context_leaves_it_out(path: str) -> None:
    assert dockerignored(path)


@pytest.mark.parametrize("path", ["server.py", "api/app.py", "models/my-voice/tts_models/t2s_encoder_fp32.onnx"])
def test_the_docker_build_context_keeps_the_code_and_voices(path: str) -> None:
    assert not dockerignored(path)
