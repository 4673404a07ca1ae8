"""End to end, on the four demo voices: every id GET /v1/audio/voices lists gets 200 audio in that voice, whatever
`model` the client sends (Open WebUI keeps one admin model and offers every listed voice), with `voice` as a string
and as an object. The voice is read back from X-Voice and from the request's log line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import start_demo_server, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

ALL_DEMO_VOICES = ("demo", "demo-zh", "demo-en", "demo-ko")
#: A sentence each voice can speak: a voice reads text in its own language.
TEXTS = {"demo": "こんにちは。", "demo-zh": "你好。", "demo-en": "Hello there.", "demo-ko": "안녕하세요."}
#: A voice (other than most ids'), an OpenAI model name, and `tts-1`.
MODELS = ("demo", "demo-ko", "gpt-4o-mini-tts", "tts-1")


@pytest.fixture(scope="module")
def polyglot(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"DEMO_VOICES": ",".join(ALL_DEMO_VOICES)}
    process = start_demo_server("voice-ids", tmp_path_factory.mktemp("no-models"), env)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def listed(polyglot: ServerProcess) -> list[dict[str, str]]:
    voices = httpx.get(f"{polyglot.base_url}/v1/audio/voices", timeout=10).json()["voices"]
    assert {voice["model"] for voice in voices} == set(ALL_DEMO_VOICES)
    assert "demo/calm" in {voice["id"] for voice in voices}
    return voices


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", ["string", "object"])
def test_every_listed_voice_speaks_whatever_the_model(
    polyglot: ServerProcess, listed: list[dict[str, str]], model: str, shape: str
) -> None:
    for voice in listed:
        field: object = voice["id"] if shape == "string" else {"id": voice["id"]}
        body = {"model": model, "input": TEXTS[voice["model"]], "voice": field, "response_format": "wav"}
        response = httpx.post(f"{polyglot.base_url}/v1/audio/speech", json=body, timeout=120)
        assert response.status_code == 200, (voice["id"], response.text[:300])
        assert response.headers["x-voice"] == voice["id"]
        assert wav_info(response.content)[3] > 0.2
        polyglot.log_line(f"request_id={response.headers['x-request-id']} voice={voice['id']} ")
