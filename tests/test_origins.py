"""Which web pages may use the server (issue 23, item 5): without API_KEY, none on another origin unless
ALLOWED_ORIGINS names it; with API_KEY, any (a page still needs the key). Clients that are not browsers send no
Origin and are never affected; the server's own playground is same-origin.

On facf13a every answer carried `Access-Control-Allow-Origin: *` by default and a foreign page's POST was served.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from api.app import Application
from settings import Settings
from tests.helpers import asgi_call

FOREIGN = "https://some-page.example"
#: A request a page can send without a CORS preflight: POST with a text/plain body (no voice needed to judge it).
SIMPLE_POST = {"content-type": "text/plain", "host": "testserver"}


def application(tmp_path: Path, **settings: object) -> Application:
    return Application(Settings(**settings), tmp_path / "GenieData", [])  # type: ignore[arg-type]


def headers_of(sent: list[tuple[str, str]]) -> dict[str, str]:
    return {name: value for name, value in sent}


def test_without_a_key_a_foreign_page_can_neither_read_answers_nor_make_the_server_work(tmp_path: Path) -> None:
    app = application(tmp_path)
    status, sent, body = asgi_call(app, "POST", "/v1/audio/speech", {**SIMPLE_POST, "origin": FOREIGN})
    assert status == 403
    error = orjson.loads(body)["error"]
    assert error["code"] == "origin_not_allowed" and f"ALLOWED_ORIGINS={FOREIGN}" in error["message"]
    assert "access-control-allow-origin" not in headers_of(sent)
    status, sent, _ = asgi_call(app, "GET", "/v1/models", {"origin": FOREIGN})
    assert status == 200 and "access-control-allow-origin" not in headers_of(sent)  # served, unreadable to the page
    status, sent, _ = asgi_call(app, "OPTIONS", "/v1/audio/speech", {"origin": FOREIGN, "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in headers_of(sent)  # the preflight fails in the browser


@pytest.mark.parametrize(
    "headers",
    [
        {},  # SDKs, curl, Home Assistant, Open WebUI's backend: no Origin at all
        {"origin": "http://testserver", "sec-fetch-site": "same-origin"},  # the playground, as a browser marks it
        {"origin": "http://testserver"},  # a browser without Fetch Metadata: Origin equals Host
    ],
)
def test_clients_without_a_foreign_origin_are_served_as_before(tmp_path: Path, headers: dict[str, str]) -> None:
    status, _, body = asgi_call(application(tmp_path), "POST", "/v1/audio/speech", {**SIMPLE_POST, **headers})
    assert status != 403, body  # past the origin check: the request itself is judged (no voices here)


def test_a_page_on_a_sibling_site_is_foreign_however_similar_its_host(tmp_path: Path) -> None:
    headers = {**SIMPLE_POST, "origin": "http://testserver.evil.example", "sec-fetch-site": "cross-site"}
    assert asgi_call(application(tmp_path), "POST", "/v1/audio/speech", headers)[0] == 403
    headers = {**SIMPLE_POST, "origin": "http://testserver", "sec-fetch-site": "same-site"}  # another port or subdomain
    assert asgi_call(application(tmp_path), "POST", "/v1/audio/speech", headers)[0] == 403


def test_allowed_origins_lets_a_configured_browser_client_in(tmp_path: Path) -> None:
    app = application(tmp_path, allowed_origins=f"{FOREIGN}, https://other.example")
    status, sent, _ = asgi_call(app, "POST", "/v1/audio/speech", {**SIMPLE_POST, "origin": FOREIGN})
    assert status != 403 and headers_of(sent)["access-control-allow-origin"] == FOREIGN
    assert asgi_call(app, "POST", "/v1/audio/speech", {**SIMPLE_POST, "origin": "https://third.example"})[0] == 403


def test_with_a_key_any_origin_may_call_with_the_key(tmp_path: Path) -> None:
    app = application(tmp_path, api_key="k")
    status, sent, body = asgi_call(app, "POST", "/v1/audio/speech", {**SIMPLE_POST, "origin": FOREIGN})
    assert status == 401 and headers_of(sent)["access-control-allow-origin"] == "*", body
    keyed = {**SIMPLE_POST, "origin": FOREIGN, "authorization": "Bearer k"}
    assert asgi_call(app, "POST", "/v1/audio/speech", keyed)[0] not in (401, 403)


def test_the_default_origins_follow_the_key() -> None:
    assert Settings().cors_origins() == ""
    assert Settings(api_key="k").cors_origins() == "*"
    assert Settings(allowed_origins="*").cors_origins() == "*"
    assert Settings(api_key="k", allowed_origins="https://a.example").cors_origins() == "https://a.example"


def test_the_key_is_read_the_way_the_header_is_compared() -> None:
    """A Secret made from a key file ends in a newline; `Bearer <key>` never does (facf13a: everyone got 401)."""
    assert Settings.from_env({"API_KEY": "s3cret\n"}).api_key == "s3cret"
    assert Settings.from_env({"API_KEY": "  s3cret \r\n"}).api_key == "s3cret"
    with pytest.raises(ValueError, match="API_KEY"):
        Settings.from_env({"API_KEY": " \n"})  # a key file with nothing in it: refuse to start rather than run open
