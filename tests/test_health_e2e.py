"""HEAD and /livez on the real server, with raw sockets: what goes on the wire.

A HEAD answer must carry the GET's status and headers and not one body byte: on a keep-alive connection a stray
body would be read as the start of the next response (HAProxy and uptime monitors check health with HEAD).
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


def connect(server: ServerProcess) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


class Wire:
    """The bytes a connection receives, split into responses by their heads and Content-Length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed before a complete head; received {self.buffer!r}"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1.1 "), status_line
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def body(self, length: int) -> bytes:
        while len(self.buffer) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed inside a body"
            self.buffer += chunk
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def nothing_more(self, wait: float = 0.5) -> bool:
        """True when nothing beyond what was parsed arrives within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            self.buffer += self.sock.recv(65536)
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(10)
        return self.buffer == b""


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


@pytest.mark.parametrize("path", ["/health", "/livez", "/v1/models", "/"])
def test_head_sends_the_gets_status_and_headers_and_no_body_then_the_connection_goes_on(server: ServerProcess, path: str) -> None:
    with connect(server) as sock:
        wire = Wire(sock)
        sock.sendall(request(path))
        get_status, get_headers = wire.head()
        get_body = wire.body(int(get_headers["content-length"]))

        sock.sendall(request(path, "HEAD"))
        status, headers = wire.head()
        assert status == get_status == 200
        assert headers["content-length"] == str(len(get_body)) == get_headers["content-length"]
        assert headers["content-type"] == get_headers["content-type"]
        assert set(headers) == set(get_headers)
        assert wire.nothing_more(), f"body bytes after a HEAD's head: {wire.buffer[:200]!r}"

        sock.sendall(request("/livez"))  # the same keep-alive connection still speaks HTTP
        status, headers = wire.head()
        assert status == 200 and headers.get("connection") != "close"
        assert json.loads(wire.body(int(headers["content-length"]))) == {"status": "alive"}


def test_head_on_the_post_only_speech_route_is_a_405_with_allow_and_no_body(server: ServerProcess) -> None:
    with connect(server) as sock:
        wire = Wire(sock)
        sock.sendall(request("/v1/audio/speech", "HEAD"))
        status, headers = wire.head()
        assert (status, headers["allow"]) == (405, "POST")
        assert int(headers["content-length"]) > 0  # the length of the error body a GET-like request would get
        assert wire.nothing_more(), wire.buffer[:200]
        sock.sendall(request("/v1/models", "DELETE"))
        status, headers = wire.head()
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        assert json.loads(wire.body(int(headers["content-length"])))["error"]["code"] == "method_not_allowed"


def test_liveness_and_readiness_on_a_ready_server(server: ServerProcess) -> None:
    live = httpx.get(f"{server.base_url}/livez", timeout=10)
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert live.headers["content-type"] == "application/json"
    ready = httpx.get(f"{server.base_url}/health", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "healthy"
