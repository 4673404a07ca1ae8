"""End to end, raw sockets against `python server.py` of its own: idle connections cannot lock others out,
the per-client connection cap, the request-head size limit, and WebSocket handshakes.

Client addresses: every 127.x.y.z is this machine, so sockets bound to different ones are different clients.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as websocket_connect

from tests.helpers import start_demo_server
from tests.server_process import ServerProcess
from tests.test_openapi import assert_conforms

pytestmark = pytest.mark.e2e

MAX_CONNECTIONS = 24
PER_CLIENT = 6
PROXY = "127.0.0.9"
HEAD_LIMIT = 32 * 1024


@pytest.fixture(scope="module")
def guarded(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"MAX_CONNECTIONS": str(MAX_CONNECTIONS), "MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT), "TRUSTED_PROXIES": PROXY}
    server = start_demo_server("guarded", tmp_path_factory.mktemp("no-models"), env)
    yield server
    server.stop()


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def connect(server: ServerProcess, source: str, timeout: float = 10) -> socket.socket:
    return socket.create_connection(address(server), timeout=timeout, source_address=(source, 0))


def health(server: ServerProcess, source: str = "127.0.0.1") -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as client:
        return client.get(f"{server.base_url}/health")


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length, the connection left open."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < int(parse(answer)[1]["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {answer!r}"
        answer += chunk
    return parse(answer)


def assert_documented(path: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """A raw answer to GET `path` is one api/openapi.json documents."""
    assert_conforms("GET", path, httpx.Response(status, headers=headers, content=body))


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


BUSY_HEAD = (
    b"POST /v1/audio/speech HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Expect: 100-continue\r\n\r\n"
)


def busy(server: ServerProcess, source: str) -> socket.socket:
    """A connection with a request in progress: a speech request waiting for its body, which the server asked for
    (`100 Continue`: the request has started, whatever the order the server reads its sockets in)."""
    sock = connect(server, source)
    sock.sendall(BUSY_HEAD)
    interim = sock.recv(65536)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
    return sock


def finish(sock: socket.socket) -> int:
    """Send the busy request's body, `{}`: the server answers 400 (no model) and the connection stays open."""
    sock.sendall(b"{}")
    status, headers, body = read_response(sock)
    if status == 400:
        assert json.loads(body)["error"]["param"] == "model"
    return status


def test_idle_connections_from_one_address_do_not_make_health_503(guarded: ServerProcess) -> None:
    """Before: 30 bare connections filled MAX_CONNECTIONS (24) and /health answered 503 until HEAD_TIMEOUT."""
    idle = [connect(guarded, "127.0.0.2") for _ in range(30)]
    try:
        assert health(guarded).status_code == 200
        assert health(guarded, "127.0.0.2").status_code == 200  # the flooding address itself is not locked out
        still_open = [sock for sock in idle if not closed_by_server(sock, 0.3)]
        assert len(still_open) <= PER_CLIENT  # the longest idle of its own connections were closed
        assert still_open == idle[-len(still_open) :]  # ...and those are the newest
    finally:
        for sock in idle:
            sock.close()


def test_a_reconnecting_flood_of_headless_sockets_does_not_make_health_503(guarded: ServerProcess) -> None:
    """Bare sockets from 6 addresses, about 60 a second, each held open: more than MAX_CONNECTIONS in a second."""
    stop = threading.Event()
    opened = [0]

    def flood(source: str) -> None:
        held: list[socket.socket] = []
        while not stop.is_set():
            try:
                held.append(connect(guarded, source, timeout=2))
                opened[0] += 1
            except OSError:
                pass
            if len(held) > 40:
                held.pop(0).close()
            time.sleep(0.1)
        for sock in held:
            sock.close()

    floods = [threading.Thread(target=flood, args=(f"127.0.1.{n}",)) for n in range(1, 7)]
    for thread in floods:
        thread.start()
    try:
        time.sleep(1.5)
        statuses = []
        for _ in range(20):
            statuses.append(health(guarded).status_code)
            time.sleep(0.1)
        assert opened[0] > 2 * MAX_CONNECTIONS
        assert statuses == [200] * 20
    finally:
        stop.set()
        for thread in floods:
            thread.join()


def test_the_per_client_cap_refuses_only_when_that_clients_requests_fill_it(guarded: ServerProcess) -> None:
    requests = [busy(guarded, "127.0.0.4") for _ in range(PER_CLIENT)]
    try:
        idle = [connect(guarded, "127.0.0.4") for _ in range(10)]  # they close each other, never a busy one
        with connect(guarded, "127.0.0.4") as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            status, headers, body = parse(read_until_closed(extra))  # the server closes the connection after answering
        assert status == 429
        assert headers["retry-after"] == "5" and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        assert_documented("/health", status, headers, body)
        assert health(guarded, "127.0.0.5").status_code == 200  # other clients are not limited by it
        assert [finish(sock) for sock in requests] == [400] * PER_CLIENT  # the requests in progress went on
        assert health(guarded, "127.0.0.4").status_code == 200  # none in progress now
        for sock in idle:
            sock.close()
    finally:
        for sock in requests:
            sock.close()


def test_a_trusted_proxy_has_no_per_client_cap(guarded: ServerProcess) -> None:
    requests = [busy(guarded, PROXY) for _ in range(PER_CLIENT * 2)]
    try:
        assert [finish(sock) for sock in requests] == [400] * PER_CLIENT * 2
    finally:
        for sock in requests:
            sock.close()


def test_requests_in_progress_filling_max_connections_get_503(guarded: ServerProcess) -> None:
    """Only connections with a request in progress fill the limit: then a complete request head gets the 503."""
    requests = [busy(guarded, f"127.0.2.{n // PER_CLIENT + 1}") for n in range(MAX_CONNECTIONS)]
    try:
        response = health(guarded, "127.0.0.6")
        assert response.status_code == 503 and response.json()["error"]["code"] == "too_many_connections"
        assert_conforms("GET", "/health", response)
        assert response.headers["retry-after"] == "5"
        assert [finish(sock) for sock in requests] == [400] * MAX_CONNECTIONS
        assert health(guarded, "127.0.0.6").status_code == 200
    finally:
        for sock in requests:
            sock.close()


def head_of(size: int, target: bytes = b"/health") -> bytes:
    """A GET /health whose request line and headers take exactly `size` bytes, padded by one header."""
    bare = b"GET " + target + b" HTTP/1.1\r\nHost: test\r\nX-Padding: \r\n\r\n"
    return bare.replace(b"X-Padding: ", b"X-Padding: " + b"p" * (size - len(bare)))


def test_a_head_at_the_limit_is_served_and_one_byte_more_is_431(guarded: ServerProcess) -> None:
    with connect(guarded, "127.0.0.1") as sock:
        sock.sendall(head_of(HEAD_LIMIT) + head_of(HEAD_LIMIT - 5000))  # pipelined: both served
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 2:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {answers!r}"
            answers += chunk
    with connect(guarded, "127.0.0.1") as sock:
        sock.sendall(head_of(HEAD_LIMIT + 1))
        status, headers, body = parse(read_until_closed(sock))
    assert status == 431 and headers["connection"] == "close" and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "request_header_fields_too_large" and error["type"] == "invalid_request_error"
    assert_documented("/health", status, headers, body)


def test_a_huge_url_is_431(guarded: ServerProcess) -> None:
    with connect(guarded, "127.0.0.1") as sock:
        sock.sendall(b"GET /" + b"a" * (HEAD_LIMIT + 100) + b" HTTP/1.1\r\nHost: test\r\n\r\n")
        status, _, body = parse(read_until_closed(sock))
    assert status == 431 and json.loads(body)["error"]["code"] == "request_header_fields_too_large"


def test_a_streamed_huge_header_is_refused_before_it_ends_and_health_still_answers(guarded: ServerProcess) -> None:
    """Before: the server read 108 MB of one header (stalling its event loop) and answered nothing."""
    total = 16 * 1024 * 1024
    chunk = b"a" * 65536
    result: dict[str, object] = {}

    def attack() -> None:
        sock = connect(guarded, "127.0.0.7", timeout=30)
        sent = 0
        answer = b""
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Huge: ")
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered
                sock.sendall(chunk)
                sent += len(chunk)
                time.sleep(0.005)
            result["sent"] = sent
            answer = read_until_closed(sock)
        except OSError as error:  # the server closed while we were still sending
            result["sent"] = sent
            result["error"] = error
            answer = answer or read_until_closed(sock)
        finally:
            result["answer"] = answer
            sock.close()

    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        for _ in range(5):
            assert health(guarded).status_code == 200
            time.sleep(0.05)
    finally:
        attacker.join(timeout=60)
    assert not attacker.is_alive()
    assert int(result["sent"]) < total, "the whole header was sent without an answer"  # type: ignore[call-overload]
    status, _, body = parse(result["answer"])  # type: ignore[arg-type]
    assert status == 431 and json.loads(body)["error"]["code"] == "request_header_fields_too_large"


def test_a_websocket_handshake_is_answered_as_plain_http(guarded: ServerProcess) -> None:
    """`python server.py` does not speak WebSocket: the handshake is an HTTP request like any other (before: 500)."""
    url = guarded.base_url.replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as refused:
        websocket_connect(f"{url}/v1/audio/speech", open_timeout=10)
    assert refused.value.response.status_code == 405  # the route is POST only
    assert json.loads(refused.value.response.body)["error"]["code"] == "method_not_allowed"
    with pytest.raises(InvalidStatus) as unknown:
        websocket_connect(f"{url}/v1/realtime", open_timeout=10)
    assert unknown.value.response.status_code == 404
    assert json.loads(unknown.value.response.body)["error"]["code"] == "not_found"
    with pytest.raises(InvalidStatus) as health_check:
        websocket_connect(f"{url}/health", open_timeout=10)
    assert health_check.value.response.status_code == 200  # the route's normal answer: no switch of protocols
    assert "status" in json.loads(health_check.value.response.body)
