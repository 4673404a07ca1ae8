"""End to end: every response format streamed and decodable, and `speed` on the wire."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import LONG, MEDIUM, speak, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

#: Content-Type, and what ffprobe calls the container and codec.
FORMATS = {
    "mp3": ("audio/mpeg", "mp3", "mp3"),
    "opus": ("audio/ogg", "ogg", "opus"),
    "aac": ("audio/aac", "aac", "aac"),
    "flac": ("audio/flac", "flac", "flac"),
    "wav": ("audio/wav", "wav", "pcm_s16le"),
}


def decode(data: bytes, path: Path, *extra: str) -> tuple[dict, float]:
    """(ffprobe's format and stream, seconds ffmpeg actually decodes)."""
    path.write_bytes(data)
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=format_name:stream=codec_name,sample_rate,channels",
            "-of",
            "json",
            *extra,
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", *extra, "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return json.loads(probe.stdout), len(pcm) / 2 / 48000


@pytest.fixture(scope="module")
def wav_seconds(server: ServerProcess) -> float:
    return wav_info(speak(server, MEDIUM, response_format="wav").content)[3]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_decodes_to_the_duration_of_the_wav(
    server: ServerProcess, name: str, wav_seconds: float, tmp_path: Path
) -> None:
    content_type, container, codec = FORMATS[name]
    response = speak(server, MEDIUM, response_format=name)
    assert response.status_code == 200 and response.headers["content-type"] == content_type
    info, seconds = decode(response.content, tmp_path / f"speech.{name}")
    assert container in info["format"]["format_name"].split(",")
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["channels"]) == (codec, 1)
    assert int(stream["sample_rate"]) == int(response.headers["x-sample-rate"])
    assert abs(seconds - wav_seconds) < 0.1, (name, seconds, wav_seconds)


@pytest.mark.parametrize("name", ["mp3", "opus", "aac", "flac", "pcm"])
def test_first_bytes_of_each_format_arrive_while_later_segments_are_synthesised(
    server: ServerProcess, name: str, tmp_path: Path
) -> None:
    """Decodable audio is in the client's hands while the server is still working on this request."""
    server.wait_idle()
    body = {"model": "demo", "input": LONG, "response_format": name}
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", json=body, timeout=120) as response:
        assert response.status_code == 200
        received = b""
        extra = ("-f", "s16le", "-ar", "24000", "-ac", "1") if name == "pcm" else ()
        chunks = response.iter_raw()
        for chunk in chunks:
            received += chunk
            if len(received) > 1024 and decode(received, tmp_path / f"head.{name}", *extra)[1] > 0.3:
                break
        during = server.health()["synthesis"]
        rest = b"".join(chunks)
    assert during["active_requests"] == 1, "all audio arrived only after synthesis ended"
    assert decode(received + rest, tmp_path / f"all.{name}", *extra)[1] > 10


@pytest.mark.parametrize("speed", [0.5, 2.0, 4.0])
def test_speed_scales_the_duration(server: ServerProcess, speed: float, wav_seconds: float) -> None:
    response = speak(server, MEDIUM, response_format="wav", speed=speed)
    assert response.status_code == 200
    seconds = wav_info(response.content)[3]
    assert abs(seconds * speed / wav_seconds - 1) < 0.05, (speed, seconds, wav_seconds)


def test_speed_with_a_compressed_streamed_format(server: ServerProcess, wav_seconds: float, tmp_path: Path) -> None:
    response = speak(server, LONG, response_format="opus", speed=1.25)
    normal = speak(server, LONG, response_format="wav")
    _, seconds = decode(response.content, tmp_path / "fast.opus")
    assert abs(seconds * 1.25 / wav_info(normal.content)[3] - 1) < 0.05
