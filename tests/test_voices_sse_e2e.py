"""End to end: voice listings, styles and aliases, `instructions`, and server-sent events."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from tests.helpers import LONG, MEDIUM, SHORT, client, speak, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

STRICT_KEY = {"authorization": "Bearer test-secret-key"}


def test_voice_listings_show_styles_in_open_webui_shapes(server: ServerProcess) -> None:
    voices = httpx.get(f"{server.base_url}/v1/audio/voices", timeout=10).json()
    assert voices == {
        "voices": [
            {"id": "demo", "name": "demo", "model": "demo", "style": None},
            {"id": "demo/calm", "name": "demo (calm)", "model": "demo", "style": "calm"},
        ]
    }
    assert httpx.get(f"{server.base_url}/v1/audio/models", timeout=10).json() == {"models": [{"id": "demo"}]}


def test_listings_are_open_but_the_rest_needs_the_key(strict_server: ServerProcess) -> None:
    base = strict_server.base_url
    for path in ("/v1/audio/voices", "/v1/audio/models", "/health", "/"):
        assert httpx.get(f"{base}{path}", timeout=10).status_code == 200, path
    assert httpx.get(f"{base}/v1/models", timeout=10).status_code == 401
    assert httpx.get(f"{base}/health", timeout=10).json()["api_key_required"] is True


@pytest.mark.parametrize(
    ("model", "voice", "chosen"),
    [
        ("demo", None, "demo"),
        ("demo", "alloy", "demo"),  # OpenAI voice names mean the default clip
        ("demo", "demo", "demo"),
        ("demo", "calm", "demo/calm"),
        ("demo", "CALM", "demo/calm"),
        ("demo", "demo/calm", "demo/calm"),
        ("tts-1", "demo/calm", "demo/calm"),  # OpenAI model name: the voice field picks voice and style
        ("gpt-4o-mini-tts", "calm", "demo/calm"),  # the only voice, its style
    ],
)
def test_voice_field_selects_the_style(server: ServerProcess, model: str, voice: str | None, chosen: str) -> None:
    fields = {"voice": voice} if voice is not None else {}
    response = httpx.post(f"{server.base_url}/v1/audio/speech", json={"model": model, "input": SHORT, **fields}, timeout=120)
    assert response.status_code == 200
    assert response.headers["x-voice"] == chosen
    assert wav_info(response.content)[3] > 0.5
    request_id = response.headers["x-request-id"]
    server.log_line(f"request_id={request_id} voice={chosen} ")


def test_unknown_style_is_a_400_the_sdk_reports(server: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(server, max_retries=0).audio.speech.create(model="demo", voice="whisper", input=SHORT)
    error = raised.value.body
    assert error["code"] == "voice_not_found" and error["param"] == "voice"
    assert "demo/calm" in error["message"]  # the error lists what exists


def test_voice_aliases_map_openai_names(strict_server: ServerProcess) -> None:
    """strict_server runs with VOICE_ALIASES=alloy=demo/calm,echo=demo."""
    base = strict_server.base_url
    cases = {"alloy": "demo/calm", "ALLOY": "demo/calm", "echo": "demo", "nova": "demo"}
    for voice, chosen in cases.items():
        response = httpx.post(
            f"{base}/v1/audio/speech", json={"model": "tts-1", "input": SHORT, "voice": voice}, headers=STRICT_KEY, timeout=120
        )
        assert (response.status_code, response.headers.get("x-voice")) == (200, chosen), voice


def test_instructions_are_accepted_and_change_nothing(server: ServerProcess) -> None:
    plain = speak(server, SHORT, voice="alloy")
    instructed = speak(server, SHORT, voice="alloy", instructions="Speak in a cheerful, warm tone.")
    assert plain.status_code == instructed.status_code == 200
    assert instructed.content == plain.content  # synthesis is deterministic on the demo voice


def sse_events(lines: list[str]) -> list[dict]:
    events = []
    for line in lines:
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: ") :]))
        else:
            assert line == "", f"unexpected SSE line {line!r}"
    return events


@pytest.mark.parametrize("response_format", ["wav", "pcm"])
def test_sse_carries_the_same_audio_as_the_byte_stream(server: ServerProcess, response_format: str) -> None:
    with client(server).audio.speech.with_streaming_response.create(
        model="demo", voice="alloy", input=MEDIUM, response_format=response_format, stream_format="sse"
    ) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = sse_events(list(response.iter_lines()))
    deltas, done = events[:-1], events[-1]
    assert deltas and all(event["type"] == "speech.audio.delta" for event in deltas)
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    audio = b"".join(base64.b64decode(event["audio"]) for event in deltas)
    plain = speak(server, MEDIUM, voice="alloy", response_format=response_format)
    assert audio == plain.content


def test_sse_events_arrive_while_synthesis_runs(server: ServerProcess) -> None:
    server.wait_idle()
    body = {"model": "demo", "input": LONG, "stream_format": "sse"}
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", json=body, timeout=120) as response:
        lines = response.iter_lines()
        audio_events = 0
        for line in lines:
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "speech.audio.delta":
                audio_events += 1
                if audio_events == 2:  # the header, then the first segment's audio
                    break
        assert server.health()["synthesis"]["active_requests"] == 1
        rest = sse_events([line for line in lines])
    assert rest[-1]["type"] == "speech.audio.done"
    assert sum(event["type"] == "speech.audio.delta" for event in rest) >= 3
