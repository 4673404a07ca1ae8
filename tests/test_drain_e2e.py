"""End to end, each test on a server of its own: the drain after SIGTERM (DRAIN_SECONDS) under `python server.py`.

A balancer must see /health fail before the listening socket closes, or it sends new connections to a closed
port: so from the first signal /health answers 503 "draining" while requests are still accepted and served;
after DRAIN_SECONDS the listener closes and streams in flight finish (within SHUTDOWN_TIMEOUT); exit 0.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import LONG, SHORT, start_demo_server
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

#: Generous: the listener must outlive it, and a stream slowed by a busy machine must still finish after it.
SHUTDOWN_TIMEOUT = 240
#: The client's receive buffer for the long stream. Small, so that the server cannot hand the whole stream to the
#: kernel long before the client has read it: the stream stays in flight for as long as the client reads slowly.
CLIENT_RECEIVE_BUFFER = 16 * 1024


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def accepts_connections(server: ServerProcess) -> bool:
    try:
        socket.create_connection(address(server), timeout=2).close()
    except OSError:
        return False
    return True


def wait_until_refused(server: ServerProcess, timeout: float) -> float:
    """Poll the port; the monotonic time at which it first refused a connection."""
    deadline = time.monotonic() + timeout
    while accepts_connections(server):
        if time.monotonic() > deadline:
            raise AssertionError(f"the port still accepts connections {timeout} s later")
        time.sleep(0.05)
    return time.monotonic()


def start(name: str, tmp_path: Path, drain_seconds: int) -> tuple[ServerProcess, list[tuple[int, int]]]:
    """The server, and (/health status, /livez status) seen while its voice was loading."""
    env = {"DRAIN_SECONDS": str(drain_seconds), "SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)}
    loading: list[tuple[int, int]] = []

    def while_loading(server: ServerProcess, health: httpx.Response) -> None:
        loading.append((health.status_code, httpx.get(f"{server.base_url}/livez", timeout=10).status_code))

    return start_demo_server(name, tmp_path / "no-models", env, while_loading=while_loading), loading


@pytest.mark.timeout(600)
def test_sigterm_drains_then_closes_the_listener_and_lets_streams_finish(demo_root: Path, tmp_path: Path) -> None:
    drain_seconds = 3
    server, _ = start("drain", tmp_path, drain_seconds)
    try:
        stream: dict[str, object] = {}
        first_audio = threading.Event()
        body_done = threading.Event()

        def read_long_stream() -> None:
            """A player: reads the stream at twice real time, so it lasts well beyond the drain."""
            transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)])
            body = b""
            try:
                with (
                    httpx.Client(transport=transport, timeout=SHUTDOWN_TIMEOUT) as client,
                    client.stream(
                        "POST",
                        f"{server.base_url}/v1/audio/speech",
                        json={"model": "demo", "input": LONG + LONG},
                        headers={"x-request-id": "long-stream"},
                    ) as response,
                ):
                    stream["status"] = response.status_code
                    bytes_per_s = int(response.headers["x-sample-rate"]) * 2  # 16-bit mono
                    began = time.monotonic()
                    for chunk in response.iter_raw(4096):
                        body += chunk
                        first_audio.set()
                        time.sleep(max(0.0, began + len(body) / (2 * bytes_per_s) - time.monotonic()))
                stream["ended"] = time.monotonic()
            except Exception as error:  # reported by the test thread
                stream["error"] = error
            finally:
                stream["body"] = body
                first_audio.set()
                body_done.set()

        reader = threading.Thread(target=read_long_stream, daemon=True)
        reader.start()
        assert first_audio.wait(120) and "error" not in stream, stream.get("error")

        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        health = httpx.get(f"{server.base_url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "draining", health.text
        assert health.headers["connection"] == "close"  # the client's next request goes to another replica
        liveness = httpx.get(f"{server.base_url}/livez", timeout=10)
        assert (liveness.status_code, liveness.json()) == (200, {"status": "alive"})
        scrape = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        assert "gsv_draining 1.0" in scrape.splitlines(), scrape

        # A new request during the drain (from a balancer that has not noticed yet) is accepted and served completely.
        late: dict[str, object] = {}

        def speak_during_drain() -> None:
            late["sent"] = time.monotonic()
            late["response"] = httpx.post(
                f"{server.base_url}/v1/audio/speech",
                json={"model": "demo", "input": SHORT},
                headers={"x-request-id": "during-drain"},
                timeout=SHUTDOWN_TIMEOUT,
            )

        speaker = threading.Thread(target=speak_during_drain, daemon=True)
        speaker.start()

        refused = wait_until_refused(server, drain_seconds + 30)
        assert refused - signalled >= drain_seconds - 0.2, "the listener closed before the drain was over"
        assert not body_done.is_set(), "the long stream should still be in flight when the listener closes"

        speaker.join(SHUTDOWN_TIMEOUT)
        assert late["sent"] < signalled + drain_seconds  # type: ignore[operator]
        answer = late["response"]
        assert isinstance(answer, httpx.Response) and answer.status_code == 200 and len(answer.content) > 44
        assert answer.headers["connection"] == "close"

        assert body_done.wait(SHUTDOWN_TIMEOUT)
        assert "error" not in stream, f"the stream in flight did not finish cleanly: {stream.get('error')!r}"
        assert stream["status"] == 200 and stream["ended"] > refused  # type: ignore[operator]
        assert server.process.wait(timeout=30) == 0

        log = server.log()
        assert "draining: /health answers 503" in log
        assert "outcome=ok" in server.log_line("client_request_id=long-stream")
        assert "outcome=ok" in server.log_line("client_request_id=during-drain")
        assert "Traceback" not in log, log
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


@pytest.mark.timeout(300)
def test_a_second_signal_ends_the_drain_at_once(demo_root: Path, tmp_path: Path) -> None:
    """SIGINT (Ctrl+C) drains like SIGTERM; a second signal skips the rest of a long drain. Also: /livez is 200
    while the voice loads."""
    drain_seconds = 120
    server, loading = start("drain-twice", tmp_path, drain_seconds)
    try:
        assert loading and set(loading) == {(503, 200)}, loading  # alive (/livez) while not ready (/health)
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        health = httpx.get(f"{server.base_url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "draining", health.text
        time.sleep(1)
        assert accepts_connections(server)

        server.process.send_signal(signal.SIGTERM)
        second = time.monotonic()
        refused = wait_until_refused(server, 30)
        assert server.process.wait(timeout=30) == 0
        assert refused - second < 30 < drain_seconds
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
