"""What many tests share: paths, the texts they speak, small clients of a running server, a scheduler's ticket."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import openai
import soundfile as sf

from tests.server_process import ROOT, ServerProcess, start_server

if TYPE_CHECKING:
    from engine.synthesis.scheduler import Scheduler, Ticket

#: The speech endpoint's path, as the tests request it (api/app.py's route table serves it).
SPEECH = "/v1/audio/speech"
CACHE = ROOT / ".cache" / "tests"
OUTPUT = ROOT / "tests" / "output"

SHORT = "こんにちは。"
MEDIUM = "こんにちは。今日はとてもいい天気ですね。"
LONG = (
    "むかしむかし、ある山のふもとに、おじいさんとおばあさんが住んでいました。"
    "おじいさんは山へしば刈りに、おばあさんは川へ洗濯に行きました。"
    "すると、川上から大きな桃が、どんぶらこ、どんぶらこと流れてきました。"
    "おばあさんはその桃を拾って、家に持って帰りました。"
)


def start_demo_server(name: str, models_dir: Path, env: dict[str, str], **options: object) -> ServerProcess:
    """A server on the demo voice (built into the test cache) plus the voices in `models_dir`, offline.

    Only the Japanese "demo" unless `env` sets DEMO_VOICES: every other demo voice costs start-up time and memory.
    """
    log_path = OUTPUT / f"server-{name}-{os.getpid()}.log"  # per test run: concurrent runs must not share logs
    demo_env = {
        "MODELS_DIR": str(models_dir),
        "DEMO": "1",
        "CACHE_DIR": str(CACHE),
        "GENIE_DATA_DIR": str(CACHE / "no-genie-data"),
        "GENIE_DOWNLOAD": "0",
        "DEMO_VOICES": "demo",
        # Test servers are stopped by SIGTERM dozens of times per run: no drain unless a test asks for one.
        "DRAIN_SECONDS": "0",
    }
    return start_server(log_path, {**demo_env, **env}, ready_timeout=240, **options)  # type: ignore[arg-type]


def client(server: ServerProcess, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", **options)  # type: ignore[arg-type]


def wav_info(data: bytes) -> tuple[int, int, int, float]:
    """(sample rate, channels, sample width, seconds) read by soundfile, which clamps the 0xFFFFFFFF sizes."""
    info = sf.info(io.BytesIO(data))
    assert info.format == "WAV" and info.subtype == "PCM_16"
    return info.samplerate, info.channels, 2, info.frames / info.samplerate


def speak(server: ServerProcess, text: str, **fields: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}{SPEECH}", json={"model": "demo", "input": text, **fields}, timeout=120)


async def settle() -> None:
    """Let every task that can run do so, up to where it waits: tasks started one after another, each settled,
    reach the scheduler in that order without guessing a sleep long enough for it."""
    for _ in range(5):
        await anyio.sleep(0)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.02)


def demo_application(demo_root: Path, settings: object) -> object:
    """The real application (api.app.Application) with the demo voice loaded, to serve in this process."""
    from api.app import Application
    from engine.genie import import_genie
    from engine.voices.registry import load_voices
    from engine.voices.voice_folder import inspect_voice

    import_genie(demo_root / "GenieData")
    app = Application(settings, demo_root / "GenieData", [])  # type: ignore[arg-type]
    app.voices.registry = load_voices([("demo", inspect_voice(demo_root / "demo"))], demo_root / "GenieData", threads=2)
    app.voices.state = "ready"
    return app


def sse_usage(server: ServerProcess, text: str, model: str = "demo", **extra: object) -> dict:
    """The `usage` of the last server-sent event of a request through the OpenAI SDK (`extra`: further body fields)."""
    with client(server).audio.speech.with_streaming_response.create(
        model=model, voice="alloy", input=text, stream_format="sse", response_format="pcm", extra_body=extra or None
    ) as response:
        events = [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")]
    audio = b"".join(base64.b64decode(event["audio"]) for event in events[:-1])
    assert events[-1]["type"] == "speech.audio.done" and len(audio) > 0
    return events[-1]["usage"]


def asgi_call(
    app: Any, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One bodiless request through an ASGI application in process: its status, its headers (names in lower case,
    in the order sent) and every body byte it sent."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(name.encode(), value.encode()) for name, value in (headers or {}).items()],
        "client": ("127.0.0.1", 1),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, bodies = sent[0], sent[1:]
    assert all(message["type"] == "http.response.body" for message in bodies)
    received = [(name.decode().lower(), value.decode()) for name, value in start["headers"]]
    return start["status"], received, b"".join(message.get("body", b"") for message in bodies)


def speech_socket(server: ServerProcess, text: str, source: str, receive_buffer: int | None = None) -> socket.socket:
    """A speech request from the address `source`, sent on a socket of its own; the caller reads its answer (or not)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    body = json.dumps({"model": "demo", "input": text}).encode()
    sock.sendall(
        f"POST {SPEECH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def admitted(scheduler: Scheduler, client: str = "") -> Ticket:
    """A request's ticket from `Scheduler.join` when a place is free now; with every place taken and no line it
    raises `QueueFull` as the server's requests meet it, and a test that finds a line instead fails here."""
    place = scheduler.join(client)
    assert place.ticket is not None, "every place is taken: this request would wait in line"
    return place.ticket
