"""The headers every response carries (nosniff; Vary: Origin for a list of origins) and the playground's CSP.

Unit tests: the application is called as an ASGI app in this process, with no voices loaded (tests/
test_headers_e2e.py checks the same on a real server, and tests/test_playground_browser.py in a real browser).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from api.access import SAFE_METHODS, Access
from api.app import Application
from api.endpoints import PLAYGROUND, playground_csp
from api.protocol import too_many_connections
from settings import Settings
from tests.helpers import asgi_call


def call(app: Application, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, list[str]]]:
    """One request through the whole application: its status and headers (each name -> every value sent)."""
    status, sent, _ = asgi_call(app, method, path, headers)
    received: dict[str, list[str]] = {}
    for name, value in sent:
        received.setdefault(name, []).append(value)
    return status, received


def application(tmp_path: Path, **settings: object) -> Application:
    return Application(Settings(**settings), tmp_path / "GenieData", [])  # type: ignore[arg-type]


#: One request of each kind the application answers by itself without voices: JSON, errors, preflight, the page.
KINDS = [
    ("GET", "/health", {}, 503),
    ("GET", "/v1/models", {}, 200),
    ("GET", "/nowhere", {}, 404),
    ("DELETE", "/v1/models", {}, 405),
    ("POST", "/v1/audio/speech", {"content-type": "text/html"}, 415),
    ("OPTIONS", "/v1/audio/speech", {"access-control-request-method": "POST"}, 204),
    ("GET", "/", {}, 200),
    ("GET", "/openapi.json", {}, 200),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), KINDS)
@pytest.mark.parametrize("origin", [None, "https://app.example", "https://evil.example"])
def test_every_response_has_nosniff_and_vary_origin_with_a_list_of_origins(
    tmp_path: Path, method: str, path: str, headers: dict[str, str], status: int, origin: str | None
) -> None:
    app = application(tmp_path, allowed_origins="https://app.example, https://two.example")
    sent = {**headers, **({"origin": origin} if origin else {})}
    got_status, got = call(app, method, path, sent)
    refused = origin == "https://evil.example" and method not in SAFE_METHODS  # a page the list does not name
    assert got_status == (403 if refused else status)
    assert got["x-content-type-options"] == ["nosniff"]
    assert got["vary"] == ["Origin"]  # once, whether or not the request had an Origin
    allowed = got.get("access-control-allow-origin")
    assert allowed == (["https://app.example"] if origin == "https://app.example" else None)


@pytest.mark.parametrize("origins", ["*", ""])
def test_no_vary_when_the_answer_does_not_depend_on_the_origin(tmp_path: Path, origins: str) -> None:
    for origin in (None, "https://app.example"):
        _, got = call(application(tmp_path, allowed_origins=origins), "GET", "/v1/models", {"origin": origin} if origin else {})
        assert got["x-content-type-options"] == ["nosniff"]
        assert "vary" not in got


def test_access_vary_headers() -> None:
    assert Access("", "https://a.example").vary_headers() == [(b"vary", b"Origin")]
    assert Access("", "https://a.example, *").vary_headers() == []
    assert Access("", " , ").vary_headers() == []


def test_the_connection_limit_answer_has_nosniff() -> None:
    assert (b"x-content-type-options", b"nosniff") in too_many_connections.headers


def sha256_source(content: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode() + "'"


def directives(csp: bytes) -> dict[str, str]:
    return {name: value for name, _, value in (part.strip().partition(" ") for part in csp.decode().split(";"))}


def test_playground_csp_allows_its_inline_script_and_style_by_hash_only() -> None:
    page = PLAYGROUND.read_bytes()
    (script,) = re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    (style,) = re.findall(rb"<style>(.*?)</style>", page, re.DOTALL)
    policy = directives(playground_csp(page))
    assert policy["script-src"] == sha256_source(script)
    assert policy["style-src"] == sha256_source(style)
    assert "unsafe" not in playground_csp(page).decode()
    assert policy["frame-ancestors"] == "'self' https://huggingface.co"
    assert policy["default-src"] == "'self'" and policy["object-src"] == "'none'"


def test_playground_csp_follows_the_page_and_allows_nothing_inline_without_it() -> None:
    """A changed script gets a new hash (no stale one); a page without inline code allows none."""
    one = directives(playground_csp(b"<script>run()</script><style type='text/css'>p{}</style>"))
    two = directives(playground_csp(b"<script>run(2)</script>"))
    assert one["script-src"] == sha256_source(b"run()") != two["script-src"] == sha256_source(b"run(2)")
    assert one["style-src"] == sha256_source(b"p{}")
    assert two["style-src"] == "'none'"


def test_served_playground_has_the_csp_of_its_bytes(tmp_path: Path) -> None:
    status, got = call(application(tmp_path), "GET", "/")
    assert status == 200
    assert got["content-security-policy"] == [playground_csp(PLAYGROUND.read_bytes()).decode()]
