"""The Space folder, built as the deployment guide says, holds what the Dockerfile copies and nothing else.

Issue 12: the guide's hand-written list of files left out `playground/`, which the Dockerfile copies, and its
only git command added the voice, never the code. The guide's commands are run here as written (the Space's
URL replaced by a local bare repository, the Python by this one), with real git and Git LFS, and the pushed
tree is checked against the Dockerfile's COPY lines, read by the test's own parser.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.tools.space import SpaceError, assemble, context_sources, main, merged_gitattributes
from tests.server_process import ROOT
from tests.test_dockerfile import stages
from tests.test_repository_hygiene import dockerignored
from tests.test_voice_folder import make_voice

GUIDE = ROOT / "docs" / "deployment-guide.md"
SPACE_URL = "https://huggingface.co/spaces/<user>/<space>"
GUIDE_PYTHON = ".venv-convert/bin/python"
#: The Hub's Blank Docker template, in part: a README and LFS lines of its own.
TEMPLATE_ATTRIBUTES = "*.7z filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def guide_space_commands() -> str:
    """The first bash block of the guide's section 3, the one a new user runs."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## 3. Create the Space") : text.index("## 4.")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert blocks, "section 3 shows no commands"
    return blocks[0]


def context_copy_sources() -> set[str]:
    """Every path a COPY of any stage takes from the build context (not --from another stage)."""
    sources = set()
    for instructions in stages((ROOT / "Dockerfile").read_text()).values():
        for instruction, arguments in instructions:
            words = arguments.split()
            if instruction in ("COPY", "ADD") and not any(word.startswith("--from=") for word in words):
                sources.update(word.removeprefix("./").rstrip("/") for word in words[:-1] if not word.startswith("--"))
    return sources


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    """git with a private HOME (`git lfs install` writes the global config) and an identity."""
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", PYTHONPATH=str(ROOT))
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return env


def make_remote_space(tmp_path: Path, env: dict[str, str]) -> Path:
    """A bare repository standing in for the Space, with the template's first commit."""
    remote = tmp_path / "space.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path, env=env)
    seed = tmp_path / "seed"
    git("clone", "-q", str(remote), str(seed), cwd=tmp_path, env=env)
    (seed / "README.md").write_text("---\ntitle: x\nsdk: docker\n---\n")
    (seed / ".gitattributes").write_text(TEMPLATE_ATTRIBUTES)
    git("add", "-A", cwd=seed, env=env)
    git("commit", "-q", "-m", "Initial commit", cwd=seed, env=env)
    git("push", "-q", "origin", "HEAD:main", cwd=seed, env=env)
    return remote


def expected_files(voice: Path) -> set[str]:
    """What the Space should hold, worked out from the Dockerfile and .dockerignore without the tool."""
    wanted = {"Dockerfile", ".dockerignore", "README.md", ".gitattributes"}
    for source in context_copy_sources():
        path = ROOT / source
        if source == "models":  # the image's voices folder: its own files, then the voices named
            files = [p for p in path.iterdir() if p.is_file()]
        else:
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        wanted.update(name for p in files if not dockerignored(name := p.relative_to(ROOT).as_posix()))
    wanted.update(f"models/{voice.name}/{p.relative_to(voice).as_posix()}" for p in voice.rglob("*") if p.is_file())
    return wanted


def test_the_guides_commands_push_a_space_the_dockerfile_can_build(tmp_path: Path, git_env: dict[str, str]) -> None:
    commands = guide_space_commands()
    assert commands.count(SPACE_URL) == 1 and commands.count(GUIDE_PYTHON) == 1, commands
    remote = make_remote_space(tmp_path, git_env)
    work = tmp_path / "checkout"  # the user's folder holding models/my-voice; the code is read from ROOT
    voice = make_voice(work / "models", "my-voice")
    (voice / "tts_models" / "vits_fp32.onnx").write_bytes(b"\x08\x07")  # a graph with content (ir_version 7): LFS stores it
    script = commands.replace(SPACE_URL, remote.as_uri()).replace(GUIDE_PYTHON, sys.executable)
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=git_env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr

    pushed = set(git("ls-tree", "-r", "--name-only", "main", cwd=remote, env=git_env).split())
    sources = context_copy_sources()
    assert {
        "server.py",
        "settings.py",
        "api",
        "engine",
        "wavstream",
        "playground",
        "models",
        "requirements.lock",
        "requirements-build.lock",
    } <= sources
    for source in sources:
        assert source in pushed or any(name.startswith(source + "/") for name in pushed), f"the Space lacks {source}"
    assert pushed == expected_files(voice)
    assert not [name for name in pushed if name.split("/")[0] in {"tests", "bench", "docs", "scripts", ".venv", "GenieData"}]
    assert not [name for name in pushed if name.endswith((".ckpt", ".pth", ".pyc"))]

    # Voices went through LFS (the Hub refuses them as plain objects), the code did not, and the template's
    # own .gitattributes lines are still there.
    def blob(name: str) -> bytes:
        return subprocess.run(["git", "show", f"main:{name}"], cwd=remote, env=git_env, check=True, capture_output=True).stdout

    for name in ("tts_models/vits_fp16.bin", "tts_models/vits_fp32.onnx", "reference/audio.wav"):
        assert blob(f"models/my-voice/{name}").startswith(LFS_POINTER), name
    assert any((remote / "lfs" / "objects").rglob("*")), "the LFS objects were not pushed"
    assert blob("server.py") == (ROOT / "server.py").read_bytes()
    assert blob(".gitattributes").decode().startswith(TEMPLATE_ATTRIBUTES)


def fake_repository(root: Path, dockerfile: str) -> Path:
    """A tiny stand-in for this repository, to show the file list follows whatever the Dockerfile says."""
    (root / "models").mkdir(parents=True)
    (root / "models" / "README.md").write_text("voices")
    (root / "models" / "local-voice").mkdir()
    (root / "models" / "local-voice" / "x.bin").write_bytes(b"x")
    for name in ("app.py", "extra/a.py", "extra/__pycache__/a.pyc", "tests/test_a.py", "requirements.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    (root / "Dockerfile").write_text(dockerfile)
    (root / ".dockerignore").write_text("tests\n**/__pycache__\n")
    (root / "README.md").write_text("---\nsdk: docker\napp_port: 7860\n---\n# x\n")
    return root


DOCKERFILE = """FROM python AS builder
COPY requirements.txt /tmp/
FROM python
COPY --from=builder /opt/venv /opt/venv
COPY app.py \\
     ./
COPY extra/ extra/
COPY models/ models/
"""


def test_the_file_list_follows_the_dockerfile(tmp_path: Path) -> None:
    root = fake_repository(tmp_path / "repo", DOCKERFILE)
    voice = make_voice(tmp_path / "voices", "alice")
    files = assemble(tmp_path / "space", [voice], root=root)
    expected = {"Dockerfile", ".dockerignore", "README.md", ".gitattributes", "requirements.txt", "app.py", "extra/a.py"}
    expected.add("models/README.md")  # the voices folder's own file; models/local-voice/ is not named, so left out
    assert set(files) - {name for name in files if name.startswith("models/alice/")} == expected
    assert "models/alice/tts_models/vits_fp16.bin" in files
    assert sorted(p.relative_to(tmp_path / "space").as_posix() for p in (tmp_path / "space").rglob("*") if p.is_file()) == files

    # A new folder in the Dockerfile is a new folder in the Space, with no list to update.
    (root / "Dockerfile").write_text(DOCKERFILE + "COPY tests/ tests/\n")
    (root / ".dockerignore").write_text("**/__pycache__\n")
    assert "tests/test_a.py" in assemble(tmp_path / "space2", [voice], root=root)


def test_context_sources_skip_other_stages_and_read_continuations() -> None:
    text = 'FROM a AS b\nCOPY x y \\\n  # note\n  z/ /dest/\nCOPY --from=b /opt /opt\nCOPY --chown=1:1 ["q", "/q"]\nADD w /w\n'
    assert context_sources(text) == ["x", "y", "z/", "q", "w"]
    with pytest.raises(SpaceError, match="wildcards"):
        context_sources("COPY *.py /app/\n")


def test_a_rerun_replaces_everything_but_git_and_keeps_the_spaces_attributes(tmp_path: Path) -> None:
    root = fake_repository(tmp_path / "repo", DOCKERFILE)
    dest = tmp_path / "space"
    (dest / ".git").mkdir(parents=True)
    (dest / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (dest / ".gitattributes").write_text(TEMPLATE_ATTRIBUTES)
    (dest / "stale.py").write_text("old")
    (dest / "models" / "old-voice").mkdir(parents=True)
    assemble(dest, [make_voice(tmp_path / "voices", "alice")], root=root)
    assert not (dest / "stale.py").exists() and not (dest / "models" / "old-voice").exists()
    assert (dest / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    attributes = (dest / ".gitattributes").read_text()
    assert attributes.startswith(TEMPLATE_ATTRIBUTES) and attributes.count("*.bin ") == 1
    assert "*.onnx filter=lfs" in attributes and "*.wav filter=lfs" in attributes


def test_merged_gitattributes_adds_only_what_is_missing() -> None:
    assert merged_gitattributes("") == "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in ("*.onnx", "*.bin", "*.wav"))
    assert merged_gitattributes(merged_gitattributes("")) == merged_gitattributes("")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("broken voice", "lacks t2s_encoder_fp32.onnx"),
        ("not a clone", "not a git clone"),
        ("the repository", "this repository"),
        ("voice inside dest", "emptied first"),
        ("same name twice", "two voices named alice"),
        ("no front matter", "no YAML front matter"),
    ],
)
def test_refusals_name_the_problem_and_touch_nothing(tmp_path: Path, case: str, message: str) -> None:
    root = fake_repository(tmp_path / "repo", DOCKERFILE)
    voice = make_voice(tmp_path / "voices", "alice")
    dest = tmp_path / "space"
    dest.mkdir()
    (dest / ".git").mkdir()
    (dest / "keep.txt").write_text("mine")
    voices = [voice]
    if case == "broken voice":
        (voice / "tts_models" / "t2s_encoder_fp32.onnx").unlink()
    elif case == "not a clone":
        (dest / ".git").rmdir()
    elif case == "the repository":
        dest = root
    elif case == "voice inside dest":
        voices = [make_voice(dest / "models", "bob")]
    elif case == "same name twice":
        voices = [voice, make_voice(tmp_path / "more", "alice")]
    elif case == "no front matter":
        (root / "README.md").write_text("# x\n")
    with pytest.raises(SpaceError, match=message):
        assemble(dest, voices, root=root)
    assert (tmp_path / "space" / "keep.txt").read_text() == "mine"


def test_the_command_line_says_what_went_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-voice").mkdir()
    assert main([str(tmp_path / "space"), "--voice", str(tmp_path / "not-a-voice")]) == 1
    assert "error: voice" in capsys.readouterr().err and not (tmp_path / "space").exists()


def test_every_relative_link_on_the_spaces_readme_page_leads_to_a_file_of_the_space(tmp_path: Path) -> None:
    """The Space shows README.md as its page; links to what the Space does not carry (the guide, .env.example, the
    benchmark results, deploy/) become plain text naming the file in the project's repository."""
    space = tmp_path / "space"
    assemble(space, [make_voice(tmp_path / "voices", "alice")])
    page = (space / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\[[^\]\n]*\]\(([^)\s]+)\)", page)
    relative = [link for link in links if "://" not in link and not link.startswith(("#", "mailto:"))]
    for link in relative:
        assert (space / link.split("#")[0]).exists(), f"the Space's README links to {link}, which the Space lacks"
    original = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/deployment-guide.md)" in original and "(docs/deployment-guide.md)" not in page
    assert "deployment guide: `docs/deployment-guide.md` of the project's repository" in page
    assert page.startswith(original[: original.index("\n---\n", 4)])  # the front matter, which configures the Space
    assert page.count("](") == original.count("](") - (len(re.findall(r"\[[^\]\n]*\]\(([^)\s]+)\)", original)) - len(links))
