"""A web page on another origin, in headless Chromium, against real servers (issue 23, item 5).

The attack: a page the user happens to open POSTs a text/plain body (no preflight needed) to a server on their
machine or intranet. On facf13a the default `Access-Control-Allow-Origin: *` let the page read the audio, and the
server synthesised it. Now, without API_KEY, the server refuses it with 403 and the page reads nothing; a browser
client the user configures is one setting away (ALLOWED_ORIGINS), and the key is read as the header compares it.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.helpers import client, start_demo_server
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

KEY = "origin-test-key"
PAGE = b"<!doctype html><title>some page</title><p>an ordinary page on another origin</p>"

#: What the page tries: a speech request, and whether it could read the answer (as a script on any page can).
FETCH_SPEECH = """async ([url, key]) => {
    const headers = {"content-type": key ? "application/json" : "text/plain"};
    if (key) headers.authorization = `Bearer ${key}`;
    try {
        const answer = await fetch(url, {method: "POST", headers,
            body: JSON.stringify({model: "demo", input: "こんにちは。", response_format: "wav"})});
        const bytes = new Uint8Array(await answer.arrayBuffer());
        return {read: true, status: answer.status, size: bytes.length,
                riff: String.fromCharCode(...bytes.slice(0, 4))};
    } catch (error) {
        return {read: false, error: String(error)};
    }
}"""


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def foreign_origin() -> Iterator[str]:
    """An origin of its own (another port is another origin) serving an ordinary page."""
    pages = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{pages.server_address[1]}"
    pages.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is required: apt-get install chromium (scripts/test.sh installs it when it can)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def configured_server(foreign_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose user lets one browser client in, with the key from a file (a trailing newline)."""
    env = {"ALLOWED_ORIGINS": foreign_origin, "API_KEY": f"{KEY}\n"}
    process = start_demo_server("origins", tmp_path_factory.mktemp("no-models"), env)
    yield process
    process.stop()


def fetch_from_page(browser: Browser, origin: str, url: str, key: str = "") -> dict:
    page = browser.new_page()
    try:
        page.goto(f"{origin}/")
        return page.evaluate(FETCH_SPEECH, [url, key])
    finally:
        page.close()


def test_a_page_on_another_origin_gets_nothing_from_a_server_without_a_key(
    browser: Browser, foreign_origin: str, server: ServerProcess
) -> None:
    before = server.log().count("code=origin_not_allowed")
    result = fetch_from_page(browser, foreign_origin, f"{server.base_url}/v1/audio/speech")
    assert result["read"] is False, result  # facf13a: read, status 200, a whole WAV
    line = server.log_line("code=origin_not_allowed")
    assert "status=403" in line and server.log().count("code=origin_not_allowed") == before + 1


def test_the_origin_allowed_origins_names_reads_the_audio_with_the_key_from_a_file(
    browser: Browser, foreign_origin: str, configured_server: ServerProcess
) -> None:
    url = f"{configured_server.base_url}/v1/audio/speech"
    result = fetch_from_page(browser, foreign_origin, url, key=KEY)
    assert result["read"] is True and result["status"] == 200 and result["riff"] == "RIFF", result
    assert result["size"] > 44
    # Another page, one the setting does not name, is still refused.
    other_origin = foreign_origin.replace("127.0.0.1", "localhost")
    assert fetch_from_page(browser, other_origin, url, key=KEY)["read"] is False
    # Clients that are not browsers, with the key as typed (no newline): facf13a answered 401 to every one.
    audio = (
        client(configured_server)
        .with_options(api_key=KEY)
        .audio.speech.create(model="demo", voice="alloy", input="こんにちは。", response_format="wav")
    )
    assert audio.content[:4] == b"RIFF"


def test_the_playgrounds_own_origin_is_never_refused(server: ServerProcess) -> None:
    """The page at / posts to its own origin (tests/test_playground_browser.py plays audio through it)."""
    same_origin = {"origin": server.base_url, "sec-fetch-site": "same-origin", "content-type": "text/plain"}
    answer = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        content=b'{"model": "demo", "input": "\\u3053\\u3093\\u306b\\u3061\\u306f\\u3002"}',
        headers=same_origin,
        timeout=120,
    )
    assert answer.status_code == 200 and answer.content[:4] == b"RIFF"
