"""On a real server with a list of allowed origins: every kind of response carries `X-Content-Type-Options:
nosniff` and `Vary: Origin` (with or without an Origin in the request), and the playground its strict CSP.
The connection limit's 503 is checked in tests/test_shutdown_e2e.py, on a server with a small limit."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import SHORT, start_demo_server
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

ORIGIN = "https://app.example"
KEY = "header-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def listed_origins(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"ALLOWED_ORIGINS": f"{ORIGIN},https://two.example", "API_KEY": KEY}
    server = start_demo_server("headers", tmp_path_factory.mktemp("no-models"), env)
    yield server
    server.stop()


def requests_of_each_kind(base: str, origin: dict[str, str]) -> dict[str, httpx.Response]:
    """kind -> the response to one request of that kind (the audio stream is read whole)."""
    speech = {"model": "demo", "input": SHORT, "response_format": "wav"}
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    with httpx.Client(base_url=base, timeout=120, headers=origin) as client:
        return {
            "json": client.get("/v1/models", headers=AUTH),
            "open json": client.get("/health"),
            "audio": client.post("/v1/audio/speech", json=speech, headers=AUTH),
            "sse": client.post("/v1/audio/speech", json={**speech, "stream_format": "sse"}, headers=AUTH),
            "401": client.get("/v1/models"),
            "404": client.get("/nowhere"),
            "400": client.post("/v1/audio/speech", json={"model": "demo"}, headers=AUTH),
            "preflight": client.options("/v1/audio/speech", headers=preflight),
            "playground": client.get("/"),
            "openapi": client.get("/openapi.json"),
        }


@pytest.mark.parametrize("origin", [{}, {"origin": ORIGIN}, {"origin": "https://evil.example"}], ids=["none", "listed", "other"])
def test_each_kind_of_response_has_nosniff_and_vary_origin(listed_origins: ServerProcess, origin: dict[str, str]) -> None:
    responses = requests_of_each_kind(listed_origins.base_url, origin)
    expected = {"json": 200, "open json": 200, "audio": 200, "sse": 200, "401": 401, "404": 404, "400": 400, "preflight": 204}
    if origin.get("origin") == "https://evil.example":  # a page the list does not name: its POSTs are refused
        expected |= {"audio": 403, "sse": 403, "400": 403}
    for kind, response in responses.items():
        assert response.status_code == expected.get(kind, 200), (kind, response.text[:200])
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], kind
        assert response.headers.get_list("vary") == ["Origin"], kind
        allowed = response.headers.get("access-control-allow-origin")
        assert allowed == (ORIGIN if origin.get("origin") == ORIGIN else None), kind
    if expected["audio"] == 200:
        assert responses["audio"].headers["content-type"] == "audio/wav" and len(responses["audio"].content) > 44


def test_playground_csp_has_no_unsafe_inline_and_names_its_framers(listed_origins: ServerProcess) -> None:
    policy = httpx.get(f"{listed_origins.base_url}/", timeout=10).headers["content-security-policy"]
    parts = {name: value for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))}
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert parts["script-src"].startswith("'sha256-") and parts["style-src"].startswith("'sha256-")
    assert parts["frame-ancestors"] == "'self' https://huggingface.co"


def test_malformed_http_400_has_nosniff(listed_origins: ServerProcess) -> None:
    host, port = listed_origins.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 400") and b"\r\nx-content-type-options: nosniff" in head, head
