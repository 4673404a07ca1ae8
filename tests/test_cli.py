"""The command lines: `python -m engine.tools.demo DIR`, `python server.py --check` and `uvicorn server:app`."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import onnx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as websocket_connect

from tests.helpers import CACHE
from tests.server_process import ROOT, ServerProcess, start_server

pytestmark = pytest.mark.e2e


def run_check(models: Path, genie_data: Path, download: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENIE_DATA_DIR": str(genie_data), "GENIE_DOWNLOAD": "1" if download else "0"}
    return subprocess.run(
        [sys.executable, "server.py", "--check", "--models", str(models)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_builder_output(demo_root: Path) -> None:
    models = demo_root / "demo" / "tts_models"
    for name in ("t2s_encoder_fp32.onnx", "t2s_shared_fp16.bin", "vits_fp16.bin", "prompt_encoder_fp16.bin"):
        assert (models / name).is_file()
    assert (demo_root / "GenieData" / "chinese-hubert-base" / "chinese-hubert-base.onnx").is_file()
    assert (demo_root / "GenieData" / "speaker_encoder.onnx").is_file()
    rule = json.loads((models / "length_rule.json").read_text())
    assert rule["tokens_per_phoneme"] == 2 and rule["ref_phonemes"] > 10 and rule["prompt_tokens"] > 50
    stage = onnx.load(models / "t2s_stage_decoder_fp32.onnx", load_external_data=False)
    stop = next(node for node in stage.graph.node if "stop_condition_tensor" in node.output)
    assert stop.op_type == "Or" and "eos_stop_condition" in stop.input


def test_check_passes_on_a_good_voice_and_fails_on_a_broken_one(demo_root: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "alice").symlink_to(demo_root / "demo", target_is_directory=True)
    good = run_check(models, demo_root / "GenieData")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "OK   alice: V2ProPlus, Japanese, reference 5.0 s" in good.stdout

    broken = models / "bob"
    shutil.copytree(demo_root / "demo" / "reference", broken / "reference")
    (broken / "tts_models").symlink_to(demo_root / "demo" / "tts_models", target_is_directory=True)
    (broken / "reference" / "config.json").write_text('{"text": "hi", "language": "klingon"}')
    bad = run_check(models, demo_root / "GenieData")
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert any(line.startswith("OK   alice") for line in lines)
    assert any(line.startswith("ERROR bob:") and "klingon" in line for line in lines)


def test_check_says_what_missing_genie_data_means(demo_root: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "alice").symlink_to(demo_root / "demo", target_is_directory=True)
    present = run_check(models, demo_root / "GenieData", download=False)
    assert present.returncode == 0 and present.stdout.startswith(f"OK   GenieData {demo_root / 'GenieData'}")

    absent = tmp_path / "GenieData"
    refused = run_check(models, absent, download=False)  # the server would not start: an error, exit 1
    assert refused.returncode == 1, refused.stdout
    assert refused.stdout.startswith(f"ERROR GenieData {absent}: missing ") and "GENIE_DOWNLOAD=0" in refused.stdout
    assert "High-Logic/Genie" in refused.stdout  # and how to get it

    fetched = run_check(models, absent, download=True)  # the server would download it: a warning that says so
    assert fetched.returncode == 0, fetched.stdout
    assert fetched.stdout.startswith(f"WARN GenieData {absent}: missing ") and "will download" in fetched.stdout


def test_a_real_voice_is_never_served_on_the_demos_stand_in_genie_data(demo_root: Path, tmp_path: Path) -> None:
    """DEMO=1 without GenieData: the demo voice runs on its generated stand-in (random HuBERT and speaker encoder),
    which would make a real voice speak noise, so the user's voices are refused with the usual instructions."""
    from engine.voices.startup import find_voices
    from engine.voices.voice_folder import VoiceError

    models = tmp_path / "models"
    models.mkdir()
    (models / "alice").symlink_to(demo_root / "demo", target_is_directory=True)
    absent = tmp_path / "GenieData"
    data_dir, found = find_voices(models, absent, allow_download=False, with_demo=True, cache_dir=CACHE)
    voices = dict(found)
    assert data_dir != absent and not isinstance(voices["demo"], VoiceError)  # the demo, on the stand-in
    assert isinstance(voices["alice"], VoiceError)
    assert f"GenieData is missing at {absent}" in str(voices["alice"]) and "High-Logic/Genie" in str(voices["alice"])

    _, with_real_data = find_voices(models, demo_root / "GenieData", allow_download=False, with_demo=True, cache_dir=CACHE)
    assert not isinstance(dict(with_real_data)["alice"], VoiceError)  # with GenieData in place, alice is served


def test_demo_serves_a_voice_per_language_unless_demo_voices_names_fewer(demo_root: Path, tmp_path: Path) -> None:
    from engine.voices.startup import find_voices
    from engine.voices.voice_folder import VoiceError, VoiceFolder

    absent = tmp_path / "GenieData"
    _, found = find_voices(tmp_path, absent, allow_download=False, with_demo=True, cache_dir=CACHE)
    languages = {name: folder.language for name, folder in found if isinstance(folder, VoiceFolder)}
    assert languages == {"demo": "ja", "demo-zh": "zh", "demo-en": "en", "demo-ko": "ko"}

    _, picked = find_voices(
        tmp_path, absent, allow_download=False, with_demo=True, cache_dir=CACHE, demo_names=("demo-en", "demo-fr")
    )
    assert [name for name, folder in picked if isinstance(folder, VoiceFolder)] == ["demo-en"]
    refused = dict(picked)["demo-fr"]
    assert isinstance(refused, VoiceError) and "demo, demo-zh, demo-en, demo-ko" in str(refused)


def test_check_on_an_empty_folder_fails(tmp_path: Path, demo_root: Path) -> None:
    result = run_check(tmp_path, demo_root / "GenieData")
    assert result.returncode == 1 and "no voice folders" in result.stdout


def test_server_without_genie_data_and_download_off_fails_at_once_with_instructions(tmp_path: Path) -> None:
    env = {**os.environ, "GENIE_DATA_DIR": str(tmp_path / "GenieData"), "GENIE_DOWNLOAD": "0", "MODELS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "server.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    assert "High-Logic/Genie" in result.stderr and str(tmp_path / "GenieData") in result.stderr


@pytest.fixture(scope="module")
def uvicorn_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`uvicorn server:app` (the brief's second way to run it), configured from the environment."""
    assert "app" not in vars(importlib.import_module("server"))  # importing the module builds nothing
    tmp_path = tmp_path_factory.mktemp("uvicorn")
    env = {
        "DEMO": "1",
        "CACHE_DIR": str(CACHE),
        "GENIE_DATA_DIR": str(tmp_path / "none"),
        "GENIE_DOWNLOAD": "0",
        "MODELS_DIR": str(tmp_path),
    }
    server = start_server(tmp_path / "uvicorn.log", env, command=("-m", "uvicorn", "server:app"), ready_timeout=240)
    yield server
    server.stop()


def test_uvicorn_serves_server_app_configured_from_the_environment(uvicorn_server: ServerProcess) -> None:
    """The same application, built on first access."""
    response = httpx.post(
        f"{uvicorn_server.base_url}/v1/audio/speech", json={"model": "demo", "input": "こんにちは。"}, timeout=60
    )
    assert response.status_code == 200 and response.content[:4] == b"RIFF" and len(response.content) > 44 + 32000


def test_uvicorn_server_app_refuses_a_websocket_handshake_in_the_error_shape(uvicorn_server: ServerProcess) -> None:
    """uvicorn speaks WebSocket here and hands the application a `websocket` scope (before: a plain-text 500)."""
    url = uvicorn_server.base_url.replace("http://", "ws://")
    for path in ("/v1/audio/speech", "/health", "/nowhere"):
        with pytest.raises(InvalidStatus) as refused:
            websocket_connect(f"{url}{path}", open_timeout=10)
        response = refused.value.response
        assert response.status_code == 400, path
        assert response.headers["content-type"] == "application/json"
        error = json.loads(response.body)["error"]
        assert error["code"] == "websocket_not_supported" and error["type"] == "invalid_request_error"
        assert error["param"] is None and "does not speak WebSocket" in error["message"]
    assert httpx.get(f"{uvicorn_server.base_url}/health", timeout=10).status_code == 200


def test_a_server_process_imports_no_offline_tool(demo_root: Path, tmp_path: Path) -> None:
    """DEMO=1 builds the demo voices in a child process (`python -m engine.tools.demo`): the server's own process,
    through find_voices and the application, never holds the builder, the quantizer or the G2P-data stand-ins."""
    script = f"""
import sys
from pathlib import Path
from engine.voices.startup import find_voices
import server
find_voices(Path({str(tmp_path)!r}), Path({str(tmp_path / "absent")!r}), allow_download=False, with_demo=True,
            cache_dir=Path({str(CACHE)!r}))
print(sorted(name for name in sys.modules if name.startswith("engine.tools")))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_demo_build_that_fails_names_the_command(tmp_path: Path) -> None:
    """The child's failure stops the start with the builder's own last lines, not a bare exit status."""
    from engine.voices.demo_voices import ensure_demo_voices

    with pytest.raises(RuntimeError, match="building the demo voices failed") as caught:
        ensure_demo_voices(tmp_path / "root", ["demo-xx"])
    assert "engine.tools.demo" in str(caught.value) and "unknown demo voice demo-xx" in str(caught.value)
