"""The exact requests real clients send (from their source, see the contract table in docs/), replayed.

Each test asserts what that client needs from the answer. `server` runs with the defaults (no API key,
DEFAULT_RESPONSE_FORMAT=wav); `strict_server` with an API key, DEFAULT_RESPONSE_FORMAT=mp3 and
VOICE_ALIASES=alloy=demo/calm,echo=demo.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import MEDIUM, SHORT, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

KEY = "test-secret-key"


def probe(ffprobe: str, data: bytes, tmp_path: Path, name: str) -> dict:
    """ffprobe's view of a body: format name, codec and sample rate (streamed mp3 declares no duration)."""
    path = tmp_path / name
    path.write_bytes(data)
    result = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "format=format_name:stream=codec_name,sample_rate", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(result.stdout)
    stream = info["streams"][0]
    return {"format": info["format"]["format_name"], "codec": stream["codec_name"], "rate": int(stream["sample_rate"])}


def decoded_seconds(data: bytes, tmp_path: Path, name: str) -> float:
    """Seconds of audio ffmpeg decodes from a body (not what a header claims)."""
    path = tmp_path / name
    path.write_bytes(data)
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return len(pcm) / 2 / 16000


def test_open_webui(strict_server: ServerProcess, ffprobe: str, tmp_path: Path) -> None:
    """Lists voices and models without Authorization, posts {model, input, voice}, caches the body as .mp3."""
    base = f"{strict_server.base_url}/v1"
    voices = httpx.get(f"{base}/audio/voices", timeout=10).json()["voices"]
    models = httpx.get(f"{base}/audio/models", timeout=10).json()["models"]
    assert {"id": "demo/calm", "name": "demo (calm)"}.items() <= voices[1].items()
    assert [model["id"] for model in models] == ["demo"]

    payload = {"input": MEDIUM, "voice": voices[1]["id"], "model": models[0]["id"]}  # the admin's choices
    response = httpx.post(
        f"{base}/audio/speech",
        json=payload,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=120,
    )
    response.raise_for_status()
    assert response.headers["content-type"] == "audio/mpeg"
    info = probe(ffprobe, response.content, tmp_path, "open-webui-cache.mp3")
    assert (info["format"], info["codec"]) == ("mp3", "mp3")
    assert decoded_seconds(response.content, tmp_path, "open-webui-decoded.mp3") > 1.5


def test_sillytavern_with_an_empty_key(server: ServerProcess, ffprobe: str, tmp_path: Path) -> None:
    """Sends "Bearer " when no key is configured, OpenAI names, mp3 and speed; replays the body as audio/mpeg."""
    body = {"input": MEDIUM, "response_format": "mp3", "voice": "alloy", "speed": 1, "model": "tts-1"}
    # http.client sends the header byte for byte (httpx refuses the trailing space).
    host, port = server.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    connection.request(
        "POST",
        "/v1/audio/speech",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": "Bearer "},
    )
    response = connection.getresponse()
    data = response.read()
    connection.close()
    assert response.status == 200 and response.getheader("content-type") == "audio/mpeg"
    info = probe(ffprobe, data, tmp_path, "sillytavern.mp3")
    assert (info["format"], info["codec"]) == ("mp3", "mp3")
    assert decoded_seconds(data, tmp_path, "sillytavern-decoded.mp3") > 1.5


def test_lobechat_and_nextchat_send_no_format(
    strict_server: ServerProcess, server: ServerProcess, ffprobe: str, tmp_path: Path
) -> None:
    """{model, input, voice, speed} and no response_format: they decode OpenAI's default (mp3) in the browser."""
    body = {"input": SHORT, "model": "tts-1", "voice": "alloy", "speed": 1}
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{strict_server.base_url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    response.raise_for_status()
    assert response.headers["content-type"] == "audio/mpeg"  # DEFAULT_RESPONSE_FORMAT=mp3
    assert probe(ffprobe, response.content, tmp_path, "lobechat.mp3")["codec"] == "mp3"

    # With the shipped default (wav) they get a WAV, which browsers' decodeAudioData also accepts.
    default = httpx.post(f"{server.base_url}/v1/audio/speech", json=body, timeout=120)
    assert default.headers["content-type"] == "audio/wav" and wav_info(default.content)[3] > 0.5


def test_home_assistant_streams_mp3_with_speed_and_instructions(server: ServerProcess, ffprobe: str, tmp_path: Path) -> None:
    """openai_tts streams the body and plays MP3 frames as they come; sends speed and instructions."""
    body = {
        "model": "tts-1",
        "voice": "demo/calm",
        "input": MEDIUM,
        "response_format": "mp3",
        "speed": 1.5,
        "instructions": "Speak like a calm radio host.",
    }
    headers = {"Authorization": "Bearer anything", "Content-Type": "application/json"}
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", json=body, headers=headers, timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
        data = b"".join(response.iter_bytes())
    assert probe(ffprobe, data, tmp_path, "home-assistant.mp3")["codec"] == "mp3"

    normal = httpx.post(f"{server.base_url}/v1/audio/speech", json={**body, "speed": 1.0}, headers=headers, timeout=120)
    ratio = decoded_seconds(data, tmp_path, "ha-fast.mp3") / decoded_seconds(normal.content, tmp_path, "ha-normal.mp3")
    assert abs(ratio - 1 / 1.5) < 0.05


def test_wyoming_bridge_reads_the_rate_from_the_streamed_wav_header(server: ServerProcess) -> None:
    """Reads the 44-byte header as the stream starts, then feeds raw PCM chunks onward at that rate."""
    body = {"model": "demo", "input": MEDIUM, "voice": "alloy", "response_format": "wav"}
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", json=body, timeout=120) as response:
        stream = response.iter_raw()
        head = b""
        while len(head) < 44:
            head += next(stream)
        rate = int.from_bytes(head[24:28], "little")
        channels = int.from_bytes(head[22:24], "little")
        width = int.from_bytes(head[34:36], "little") // 8
        pcm = head[44:] + b"".join(stream)
    assert (rate, channels, width) == (32000, 1, 2)
    assert len(pcm) % 2 == 0 and len(pcm) / (rate * width) > 1.5
