"""End to end: the limits that keep a public server up: rate limit, slow clients, slowloris, path tricks.

`strict_server` runs with RATE_LIMIT_PER_MINUTE=20, HEAD_TIMEOUT=3, BODY_TIMEOUT=3 and SEND_TIMEOUT=5.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from engine.text.segmenter import segment
from tests.helpers import LONG, SHORT
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

KEY = "test-secret-key"
AUTH = {"authorization": f"Bearer {KEY}"}


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def from_address(source: str) -> httpx.Client:
    """A client whose connections come from another loopback address: the rate limit counts per address."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), headers=AUTH, timeout=60)


def test_rate_limit_per_client_address(strict_server: ServerProcess) -> None:
    url = f"{strict_server.base_url}/v1/audio/speech"
    with from_address("127.0.0.2") as noisy:
        statuses = [noisy.post(url, json={"model": "demo"}).status_code for _ in range(20)]  # cheap 400s spend it too
        assert statuses == [400] * 20
        limited = noisy.post(url, json={"model": "demo", "input": SHORT})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(limited.headers["retry-after"]) <= 3  # 20 per minute: one every 3 s
        assert noisy.get(f"{strict_server.base_url}/health").status_code == 200  # only speech is limited
    with from_address("127.0.0.3") as other:
        assert other.post(url, json={"model": "demo"}).status_code == 400  # a fresh budget: not 429

    sdk = openai.OpenAI(
        base_url=f"{strict_server.base_url}/v1",
        api_key=KEY,
        max_retries=2,
        http_client=httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")),
    )
    began = time.monotonic()
    audio = sdk.audio.speech.create(model="demo", voice="alloy", input=SHORT, response_format="wav")
    assert audio.content[:4] == b"RIFF"  # the SDK waited as Retry-After said, then got through
    assert time.monotonic() - began >= 1


def test_a_client_that_stops_reading_is_dropped_and_frees_its_slot(strict_server: ServerProcess) -> None:
    """A client that reads nothing blocks the server's sends, so synthesis for it stops early, and it is dropped.

    At speed 0.25 the text makes 1 to 1.5 MB of WAV per segment (four times the audio of speed 1 for the same
    synthesis), some 35 MB in all. Once the socket buffers are full (the server pins its send buffer to
    `SEND_BUFFER_BYTES`, 64 KiB in api/protocol.py, which Linux doubles; this client's receive buffer is 4 KiB:
    far less than one segment) the server's send blocks, and with it synthesis for this request; a client that
    has taken no audio has no read-pace allowance beyond the grace of SEND_TIMEOUT (5 s), after which the server
    drops it (api/read_pace.py). A server whose sends never wait for the client would synthesise all 26
    segments: the bound is 8.
    """
    strict_server.wait_idle()
    text = LONG * 6
    total = len(segment(text))  # strict_server segments with the default budgets
    bound = 8
    assert total == 26 > 3 * bound
    body = json.dumps({"model": "demo", "input": text, "speed": 0.25, "response_format": "wav"}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address(strict_server))
    request_id = "slow-reader-1"
    sock.sendall(
        b"POST /v1/audio/speech HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {KEY}\r\nX-Request-Id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert sock.recv(12) == b"HTTP/1.1 200"  # then read nothing more
    try:
        # The deadline only bounds a broken server: this one logs the line about SEND_TIMEOUT after its send blocks.
        line = strict_server.log_line(f"client_request_id={request_id}", timeout=600)
        segments = int(line.split(" segments=")[1].split()[0])
        # Backpressure: synthesis stopped when the socket buffers filled, so what the server held for this
        # client is bounded by them (plus uvicorn's 64 KiB and the chunk being sent), not by the text.
        assert segments < bound, f"{segments} of {total} segments were synthesised: the send never blocked"
        assert "outcome=client_too_slow" in line
        state = strict_server.wait_idle(timeout=10)
        jobs = state["synthesis"]["jobs_run"]
        time.sleep(2)
        assert strict_server.health()["synthesis"]["jobs_run"] == jobs  # no synthesis goes on for it
    finally:
        sock.close()
    ok = httpx.post(f"{strict_server.base_url}/v1/audio/speech", json={"model": "demo", "input": SHORT}, headers=AUTH, timeout=60)
    assert ok.status_code == 200


def test_slowloris_connections_are_closed_and_do_not_block_others(strict_server: ServerProcess) -> None:
    sockets = []
    try:
        for _ in range(40):
            sock = socket.create_connection(address(strict_server))
            sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: test\r\n")
            sockets.append(sock)
        began = time.monotonic()
        assert httpx.get(f"{strict_server.base_url}/health", timeout=5).status_code == 200
        for _ in range(6):  # trickle a header byte per second: no help past HEAD_TIMEOUT
            for sock in sockets:
                try:
                    sock.sendall(b"X")
                except OSError:
                    pass
            time.sleep(1)
        closed = 0
        for sock in sockets:
            sock.settimeout(2)
            try:
                closed += sock.recv(1024) == b""
            except ConnectionResetError:  # closed with our trickled bytes unread: also closed
                closed += 1
            except TimeoutError:
                pass
        assert closed == len(sockets), f"only {closed} of {len(sockets)} trickling connections were closed"
        assert time.monotonic() - began < 15
    finally:
        for sock in sockets:
            sock.close()


def test_a_body_that_never_finishes_is_a_408(strict_server: ServerProcess) -> None:
    sock = socket.create_connection(address(strict_server))
    try:
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"model": "demo",'
        )
        sock.settimeout(10)
        began = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert 2.5 < time.monotonic() - began < 8
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert json.loads(body)["error"]["code"] == "request_timeout"
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("model", "voice"),
    [
        ("../../../../etc/passwd", None),
        ("/etc/passwd", None),
        ("demo\u0000", None),
        ("..", None),
        ("demo", "../calm"),
        ("demo", "demo/../../calm"),
        ("demo", "/etc/passwd"),
        ("demo", "calm\u0000"),
        ("tts-1", "../demo"),
    ],
)
def test_names_are_looked_up_never_opened(server: ServerProcess, model: str, voice: str | None) -> None:
    fields = {"voice": voice} if voice is not None else {}
    response = httpx.post(f"{server.base_url}/v1/audio/speech", json={"model": model, "input": SHORT, **fields}, timeout=60)
    assert response.status_code in (400, 404)
    assert response.json()["error"]["code"] in ("model_not_found", "voice_not_found")
    assert httpx.get(f"{server.base_url}/v1/models/..%2F..%2Fetc%2Fpasswd", timeout=10).status_code == 404
