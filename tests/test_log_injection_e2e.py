"""What a client can put in the server's log: escaped values in its own request's one line, never a line of its own.

The path is percent-decoded before the application sees it, so `%0D%0A` and `%00` are real CR, LF and NUL.
Request ids are the server's own: a client's X-Request-Id, even one another client also sends, is only a
separate `client_request_id` field.
"""

from __future__ import annotations

import re
import socket
import uuid
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.server_process import ServerProcess

FORGED = "2026-11-30 00:00:00,000 INFO gsv.request request_id=forged outcome=ok"


def raw_get(server: ServerProcess, target: str, client_id: str) -> tuple[int, str]:
    """GET `target` exactly as written (no client re-encodes it); (status, X-Request-Id of the response)."""
    url = urlsplit(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        head = f"GET {target} HTTP/1.1\r\nHost: test\r\nX-Request-Id: {client_id}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode("latin-1"))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status = int(received.split(b" ", 2)[1])
    request_id = re.search(rb"(?im)^x-request-id: *([^\r]+)\r$", received)
    assert request_id is not None, received[:500]
    return status, request_id.group(1).decode()


def lines_with(log: str, needle: str) -> list[str]:
    return [line for line in log.split("\n") if needle in line]


@pytest.mark.e2e
def test_a_path_cannot_forge_a_log_line(server: ServerProcess) -> None:
    marker = f"inject-{uuid.uuid4().hex[:12]}"
    status, request_id = raw_get(server, f"/{marker}%0D%0A{quote(FORGED)}%00", marker)
    assert status == 404
    line = server.log_line(f"client_request_id={marker}")
    log = server.log()
    assert lines_with(log, marker) == [line]  # one line for the request, the forged text inside it
    assert f"request_id={request_id} " in line
    assert f"path=/{marker}\\x0d\\x0a2026-11-30\\x2000:00:00,000\\x20INFO\\x20gsv.request\\x20request_id=forged" in line
    assert "\\x20outcome=ok\\x00 status=404 code=not_found outcome=rejected client=127.0.0.1 " in line
    assert not any(entry.startswith("2026-11-30 00:00:00,000") for entry in log.split("\n"))
    assert "\x00" not in log and "\r" not in log


@pytest.mark.e2e
def test_a_long_path_is_cut_in_the_log(server: ServerProcess) -> None:
    marker = f"long-{uuid.uuid4().hex[:12]}"
    assert raw_get(server, "/" + "a" * 6000, marker)[0] == 404
    line = server.log_line(f"client_request_id={marker}")
    assert "path=/" + "a" * 199 + "... " in line and len(line) < 600


@pytest.mark.e2e
def test_the_request_id_is_the_servers_and_the_clients_is_kept_apart(server: ServerProcess) -> None:
    client_id = f"dup-{uuid.uuid4().hex[:12]}"  # two requests (two clients, say) send the same id
    ids = [
        httpx.get(f"{server.base_url}/v1/models/nope", headers={"x-request-id": client_id}).headers["x-request-id"] for _ in "ab"
    ]
    assert ids[0] != ids[1] and all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    for request_id in ids:
        line = server.log_line(f"request_id={request_id} ")
        assert line.endswith(f" client=127.0.0.1 client_request_id={client_id}")
    assert len(lines_with(server.log(), client_id)) == 2
    assert not re.search(rf"(?<![\w])request_id={client_id}", server.log())  # never as the request's own id
    # A client id that is not plain is not logged at all.
    odd = f"odd id {uuid.uuid4().hex[:8]}"
    request_id = httpx.get(f"{server.base_url}/v1/models/nope", headers={"x-request-id": odd}).headers["x-request-id"]
    line = server.log_line(f"request_id={request_id} ")
    assert "client_request_id" not in line and odd.split()[-1] not in server.log()
