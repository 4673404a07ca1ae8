"""End to end, on a server of its own: the connection limit, then SIGTERM (what a Space restart sends) without a drain."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import LONG, start_demo_server
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT = 3
MAX_CONNECTIONS = 3


@pytest.fixture(scope="module")
def own_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # DRAIN_SECONDS=0: the listener closes at once on SIGTERM (the drain before it: tests/test_drain_e2e.py).
    settings = {"SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT), "MAX_CONNECTIONS": str(MAX_CONNECTIONS), "DRAIN_SECONDS": "0"}
    server = start_demo_server("shutdown", tmp_path_factory.mktemp("no-models"), settings)
    yield server
    if server.process.poll() is None:
        server.stop()


def test_beyond_max_connections_requests_get_an_openai_shaped_503(own_server: ServerProcess) -> None:
    """Connections with a request in progress (here: waiting for the body it asked for) fill the limit; idle
    connections would not, they are closed to make room (tests/test_protocol_hardening_e2e.py)."""
    host, port = own_server.base_url.removeprefix("http://").split(":")
    busy = [socket.create_connection((host, int(port)), timeout=10) for _ in range(MAX_CONNECTIONS)]
    for sock in busy:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the request has started: it is in progress
    try:
        with socket.create_connection((host, int(port)), timeout=10) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            answer = b""
            while chunk := extra.recv(4096):  # the server closes the connection after answering
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert b"retry-after: 5" in head.lower() and b"connection: close" in head.lower()
        assert b"x-content-type-options: nosniff" in head.lower()
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{own_server.base_url}/health", timeout=10).status_code == 200


@pytest.mark.timeout(300)
def test_sigterm_refuses_new_work_aborts_streams_honestly_and_exits_0(own_server: ServerProcess) -> None:
    server = own_server
    try:
        host, port = server.base_url.removeprefix("http://").split(":")
        # A request whose body never comes: still unanswered when the streams are cut (BODY_TIMEOUT is 30 s).
        waiting = socket.create_connection((host, int(port)), timeout=SHUTDOWN_TIMEOUT + 15)
        waiting.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: t\r\nX-Request-Id: cut-before-answer\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        received = b""
        with httpx.stream(
            "POST",
            f"{server.base_url}/v1/audio/speech",
            json={"model": "demo", "input": LONG},
            headers={"x-request-id": "cut-stream"},
            timeout=60,
        ) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            while len(received) <= 44:
                received += next(chunks)  # the first audio is here; most of the text is still to come
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            time.sleep(0.5)
            with pytest.raises(OSError):  # the listening socket is closed at once
                socket.create_connection((host, int(port)), timeout=2).close()

            # The stream cannot finish within SHUTDOWN_TIMEOUT, so it must end broken, never cleanly short.
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in chunks:
                    received += chunk
        assert server.process.wait(timeout=SHUTDOWN_TIMEOUT + 15) == 0
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT + 15
        log = server.log()
        assert "Shutting down" in log and "Finished server process" in log

        # The unanswered request got a clear 503 before its connection was closed.
        answer = b""
        while chunk := waiting.recv(4096):
            answer += chunk
        waiting.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert json.loads(body)["error"]["code"] == "shutting_down"

        # One request line for each request cut, and no traceback or uvicorn error for them.
        cut = [line for line in log.splitlines() if "outcome=shutdown" in line]
        assert len(cut) == 2, cut
        assert any(line.endswith("client_request_id=cut-stream") and " audio_s=" in line for line in cut), cut
        assert any(line.endswith("client_request_id=cut-before-answer") and "status=503" in line for line in cut), cut
        for sign in ("Traceback", "Exception in ASGI application", "ASGI callable returned"):
            assert sign not in log, log
    finally:
        if server.process.poll() is None:
            server.stop()
