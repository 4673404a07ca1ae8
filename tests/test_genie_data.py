"""End-to-end tests of `engine.models.genie_data`: the real `huggingface_hub` client against a local hub.

Each call of `resolve_genie_data` runs in a fresh `python` subprocess. huggingface_hub reads
HF_ENDPOINT (and HF_HOME, HF_HUB_CACHE, ...) once, at import, into `huggingface_hub.constants`,
and derives other values from it (the resolve URL template, agent-registry URL, caches).
Patching those after import would test our patch list more than the code; a new process with
the variables set before import runs the download exactly as the server would.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.models.hub import HF_REVISION
from tests.hub_standin import serve_repo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
HF_REPO = "High-Logic/Genie"

RESOLVE = """
import json, sys
from pathlib import Path
from engine.genie import GenieDataMissing
from engine.models.genie_data import resolve_genie_data
try:
    result = resolve_genie_data(Path(sys.argv[1]), allow_download=sys.argv[2] == "1")
except GenieDataMissing as error:
    print(json.dumps({"missing": str(error)}))
else:
    print(json.dumps({"resolved": str(result), "genie_tts_imported": "genie_tts" in sys.modules}))
"""

# Files of the fake hub repo: the GenieData/ folder plus files the download must leave alone.
REPO_FILES = {
    "GenieData/chinese-hubert-base/chinese-hubert-base.onnx": b"hubert weights \x00\x01\x02" * 100,
    "GenieData/chinese-hubert-base/config.json": b'{"hidden_size": 768}\n',
    "GenieData/speaker_encoder.onnx": bytes(range(256)) * 40,
    "GenieData/G2P/EnglishG2P/cmudict.rep": b"HELLO  HH AH0 L OW1\n",
    "README.md": b"# Genie\nnot part of GenieData\n",
    "CharacterModels/v2ProPlus/feibi/model.onnx": b"a voice that must not be downloaded",
}
#: What a downloaded GenieData folder must hold, byte for byte.
GENIE_FILES = {name.removeprefix("GenieData/"): data for name, data in REPO_FILES.items() if name.startswith("GenieData/")}


def hub_env(endpoint: str, hf_home: Path) -> dict[str, str]:
    """The environment with the hub at `endpoint`, a private HF cache and no inherited HF settings or tokens."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_CACHE=str(hf_home / "hub"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's `hf` command
    )
    return env


def run_resolve(target: Path, allow_download: bool, endpoint: str, hf_home: Path) -> dict:
    flag = "1" if allow_download else "0"
    env = hub_env(endpoint, hf_home)
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE, str(target), flag], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def hf_home(tmp_path: Path) -> Path:
    return tmp_path / "hf_home"


def write_repo(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def hub(tmp_path: Path) -> Iterator:
    with serve_repo(write_repo(tmp_path / "hub_repo", REPO_FILES), HF_REPO, HF_REVISION) as standin:
        yield standin


@pytest.fixture
def closed_endpoint() -> Iterator[str]:
    """An address that refuses connections: the port stays bound (so nobody else takes it) but never listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_downloads_only_genie_data_into_target(tmp_path: Path, hub, hf_home: Path) -> None:
    models = tmp_path / "models"  # a parent that does not exist yet
    target = models / "GenieData"

    result = run_resolve(target, True, hub.url, hf_home)

    assert result == {"resolved": str(target), "genie_tts_imported": False}
    assert files_under(target) == GENIE_FILES  # same bytes, and no huggingface_hub metadata (.cache) inside
    assert sorted(p.name for p in models.iterdir()) == ["GenieData"]  # no staging folder, no stray repo files
    assert not any(name in request for request in hub.requests for name in ("README.md", "CharacterModels"))
    assert any(request.startswith("GET /api/models/High-Logic/Genie/") for request in hub.requests)

    # Once there, the folder is used as it is: a second call does not touch the network.
    hub.requests.clear()
    assert run_resolve(target, True, hub.url, hf_home)["resolved"] == str(target)
    assert hub.requests == []


def test_every_hub_request_names_the_pinned_revision(tmp_path: Path, hub, hf_home: Path) -> None:
    """The stand-in serves only HF_REVISION (not `main`), and the URLs show the download asked for it."""
    run_resolve(tmp_path / "GenieData", True, hub.url, hf_home)
    repo_requests = [r for r in hub.requests if f"/{HF_REPO}/" in r]
    assert repo_requests and all(f"/{HF_REVISION}" in r for r in repo_requests), repo_requests
    assert not any("/main" in r for r in hub.requests)


def test_a_repo_without_the_pinned_revision_fails_clearly(tmp_path: Path, hf_home: Path) -> None:
    other = "0123456789abcdef0123456789abcdef01234567"
    target = tmp_path / "models" / "GenieData"
    with serve_repo(write_repo(tmp_path / "hub_repo", REPO_FILES), HF_REPO, other) as hub:
        message = run_resolve(target, True, hub.url, hf_home)["missing"]
    assert "downloading GenieData failed (RevisionNotFoundError" in message, message
    assert f"at revision {HF_REVISION}" in message and f"--revision {HF_REVISION}" in message
    assert not target.exists()


def test_replaces_an_incomplete_folder(tmp_path: Path, hub, hf_home: Path) -> None:
    target = tmp_path / "GenieData"
    (target / "chinese-hubert-base").mkdir(parents=True)
    (target / "leftover.txt").write_text("from an interrupted copy")  # speaker_encoder.onnx is missing

    assert run_resolve(target, True, hub.url, hf_home)["resolved"] == str(target)

    assert (target / "speaker_encoder.onnx").read_bytes() == REPO_FILES["GenieData/speaker_encoder.onnx"]
    assert not (target / "leftover.txt").exists()
    # No staging folder left (huggingface_hub writes nothing to HF_HOME for a download pinned to a commit).
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf_home") == ["GenieData", "hub_repo"]


def test_complete_folder_is_returned_without_network(tmp_path: Path, hub, hf_home: Path) -> None:
    target = tmp_path / "GenieData"
    (target / "chinese-hubert-base").mkdir(parents=True)
    (target / "speaker_encoder.onnx").write_bytes(b"local copy")

    assert run_resolve(target, True, hub.url, hf_home) == {"resolved": str(target), "genie_tts_imported": False}
    # A live, recording hub rather than a closed port: a contact attempt would show up here, and could not
    # be mistaken for success (a failed one would raise GenieDataMissing, a real one would replace the file).
    assert hub.requests == []
    assert (target / "speaker_encoder.onnx").read_bytes() == b"local copy"


def test_offline_fails_fast_with_instructions(tmp_path: Path, closed_endpoint: str, hf_home: Path) -> None:
    target = tmp_path / "GenieData"

    started = time.monotonic()
    result = run_resolve(target, True, closed_endpoint, hf_home)
    elapsed = time.monotonic() - started

    assert elapsed < 15, f"giving up took {elapsed:.1f} s"  # includes starting Python and importing huggingface_hub
    message = result["missing"]
    assert "downloading GenieData failed" in message
    assert HF_REPO in message and "'GenieData/'" in message and str(target) in message
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf_home") == []  # no staging folder left


def test_download_disabled_contacts_nothing(tmp_path: Path, hub, hf_home: Path) -> None:
    target = tmp_path / "GenieData"

    message = run_resolve(target, False, hub.url, hf_home)["missing"]

    assert "GENIE_DOWNLOAD=0" in message and str(target) in message and HF_REPO in message
    assert hub.requests == []
    assert not target.exists()


def test_failed_download_leaves_no_target_and_a_retry_completes(tmp_path: Path, hub, hf_home: Path) -> None:
    target = tmp_path / "models" / "GenieData"
    hub.failing.add("GenieData/speaker_encoder.onnx")

    message = run_resolve(target, True, hub.url, hf_home)["missing"]

    assert "downloading GenieData failed" in message and "500" in message and str(target) in message
    assert not target.exists()

    # The hub is back. The first attempt's staging folder (finished files plus huggingface_hub's metadata)
    # is kept on purpose: the retry fetches only what is missing, and still ends with exact bytes.
    hub.failing.clear()
    hub.requests.clear()
    assert run_resolve(target, True, hub.url, hf_home)["resolved"] == str(target)
    assert files_under(target) == GENIE_FILES
    fetched = [r.split("/GenieData/", 1)[1] for r in hub.requests if r.startswith("GET ") and "/resolve/" in r]
    assert fetched == ["speaker_encoder.onnx"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["GenieData"]


def test_download_lacking_required_files_is_refused(tmp_path: Path, hf_home: Path) -> None:
    files = {name: data for name, data in REPO_FILES.items() if name != "GenieData/speaker_encoder.onnx"}
    target = tmp_path / "models" / "GenieData"

    with serve_repo(write_repo(tmp_path / "hub_repo", files), HF_REPO, HF_REVISION) as hub:
        message = run_resolve(target, True, hub.url, hf_home)["missing"]

    assert "the download lacks speaker_encoder.onnx" in message and str(target) in message
    assert not target.exists()


def test_the_command_in_the_message_downloads_genie_data(tmp_path: Path, hub, hf_home: Path) -> None:
    """The manual instructions must work with the installed huggingface_hub, not just read well."""
    target = tmp_path / "GenieData"
    message = run_resolve(target, False, hub.url, hf_home)["missing"]
    command = re.search(r"`([^`]*download[^`]*)`", message)
    assert command, message
    workdir = tmp_path / "elsewhere"  # wherever the user happens to be: the command names the folder itself
    workdir.mkdir()

    done = subprocess.run(
        command.group(1), shell=True, cwd=workdir, env=hub_env(hub.url, hf_home), capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, f"{command.group(1)!r} failed: {done.stderr}"
    assert files_under(target) == GENIE_FILES  # in place: nothing to move
    assert list(workdir.iterdir()) == []


def test_the_instructions_download_straight_to_the_folder_named(tmp_path: Path) -> None:
    """`hf download --include 'GenieData/*' --local-dir D` writes D/GenieData: D is the target's parent."""
    from engine.models.genie_data import instructions

    target = tmp_path / "GenieData"
    text = instructions(target)
    assert f"--local-dir {tmp_path}`" in text and "rename" not in text and "--revision " in text
    elsewhere = instructions(tmp_path / "genie-data")  # another name: the one rename is said
    assert f"rename {tmp_path / 'GenieData'} to {tmp_path / 'genie-data'}" in elsewhere
    assert "python -m engine.tools.demo DIR" in text  # the offline stand-in is named
