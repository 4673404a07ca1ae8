"""Installing Genie's predefined voices, against a local stand-in of the hub (real client, real HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.models.hub import HF_REPO, HF_REVISION
from engine.voices.voice_folder import BASE_FILES, PROMPT_ENCODER_FILES, inspect_voice
from tests.hub_standin import serve_repo
from tests.server_process import ROOT
from tests.test_genie_data import hub_env

pytestmark = pytest.mark.e2e


def character_repo(root: Path) -> Path:
    """A repo with mika in Genie's layout (placeholder model files, a real FLAC prompt) and an unrelated character."""
    mika = root / "CharacterModels" / "v2ProPlus" / "mika"
    (mika / "tts_models").mkdir(parents=True)
    for name in BASE_FILES + PROMPT_ENCODER_FILES:
        (mika / "tts_models" / name).write_bytes(b"" if name.endswith(".onnx") else name.encode())  # empty graphs
    (mika / "prompt_wav").mkdir()
    sf.write(mika / "prompt_wav" / "normal.flac", np.sin(np.arange(4 * 32000) / 20).astype(np.float32) * 0.3, 32000)
    prompts = {
        "Happy": {"text": "やった！", "wav": "happy.wav"},
        "Normal": {"text": "こんにちは、ミカです。", "wav": "normal.flac"},
    }
    (mika / "prompt_wav.json").write_text(json.dumps(prompts, ensure_ascii=False), encoding="utf-8")
    other = root / "CharacterModels" / "v2ProPlus" / "feibi" / "tts_models"
    other.mkdir(parents=True)
    (other / "vits_fp16.bin").write_bytes(b"not for mika")
    return root


def install(names: list[str], models: Path, endpoint: str, hf_home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.tools.predefined", *names, "--models", str(models)],
        cwd=ROOT,
        env=hub_env(endpoint, hf_home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_installs_a_character_as_a_voice_folder(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with serve_repo(character_repo(tmp_path / "repo"), HF_REPO, HF_REVISION) as hub:
        done = install(["mika"], models, hub.url, tmp_path / "hf")
        assert done.returncode == 0, done.stderr
        assert not any("feibi" in request for request in hub.requests)
        repo_requests = [request for request in hub.requests if f"/{HF_REPO}/" in request]
        assert repo_requests and all(f"/{HF_REVISION}" in request for request in repo_requests), repo_requests
        folder = inspect_voice(models / "mika")
        assert (folder.kind, folder.language, folder.reference.text) == ("V2ProPlus", "ja", "こんにちは、ミカです。")
        assert (models / "mika" / "tts_models" / "vits_fp16.bin").read_bytes() == b"vits_fp16.bin"
        info = sf.info(str(models / "mika" / "reference" / "audio.wav"))
        assert (info.format, info.subtype, info.samplerate, info.frames) == ("WAV", "PCM_16", 32000, 4 * 32000)
        assert sorted(path.name for path in models.iterdir()) == ["mika"]  # no staging or scratch left

        count = len(hub.requests)
        again = install(["mika"], models, hub.url, tmp_path / "hf")
        assert again.returncode == 0 and len(hub.requests) == count  # already installed: no download


def test_unknown_character_and_offline_fail_clearly(tmp_path: Path) -> None:
    unknown = install(["nobody"], tmp_path / "models", "http://127.0.0.1:9", tmp_path / "hf")
    assert unknown.returncode == 1 and "mika, feibi, thirtyseven" in unknown.stderr
    offline = install(["thirtyseven"], tmp_path / "models", "http://127.0.0.1:9", tmp_path / "hf")
    assert offline.returncode == 1
    assert HF_REPO in offline.stderr and "CharacterModels/v2ProPlus/thirtyseven/" in offline.stderr
    assert not (tmp_path / "models" / "thirtyseven").exists()


def test_a_repo_without_the_pinned_revision_fails_clearly(tmp_path: Path) -> None:
    with serve_repo(character_repo(tmp_path / "repo"), HF_REPO, "f" * 40) as hub:
        done = install(["mika"], tmp_path / "models", hub.url, tmp_path / "hf")
    assert done.returncode == 1
    assert f"revision {HF_REVISION}" in done.stderr and "RevisionNotFoundError" in done.stderr, done.stderr
    assert not (tmp_path / "models" / "mika").exists()
