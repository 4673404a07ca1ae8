"""The playground page at `/`, driven in headless Chromium against the real server with the demo voice.

Playwright drives Debian's `chromium` (apt-get install chromium; scripts/test.sh does when it can), never a downloaded browser.
A missing chromium fails these tests: they are never skipped.
"""

from __future__ import annotations

import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import OUTPUT
from tests.server_process import ROOT, ServerProcess

pytestmark = pytest.mark.e2e

SCREENSHOT = OUTPUT / "playground.png"
SYNTHESIS_MS = 150_000  # a short sentence takes seconds on 2 cores; leave room for a busy machine
FIGURE = re.compile(r"(\d+\.\d\d) s")
SPEECH_URL = re.compile(r".*/v1/audio/speech$")
# The demo voice plays at an RMS of about 0.008 (-42 dBFS); silence measures exactly 0.
AUDIBLE_RMS = 1e-3
CSP_REPORT = "Content Security Policy"

# What the <audio> element really plays, measured outside the page's own code: on each "playing" event the
# element's captureStream() (its tracks, whatever feeds it: a Web Audio stream, MSE or a file) goes into an
# AnalyserNode on an AudioContext of our own, whose RMS is read every 20 ms while the element is not paused.
SIGNAL_TAP = """async () => {
    const player = document.getElementById("player");
    if (!window.signalTap) {
        const context = new AudioContext();
        const analyser = context.createAnalyser();
        analyser.fftSize = 2048;
        const samples = new Float32Array(analyser.fftSize);
        const tap = { context, peak: 0, readings: 0, source: null };
        player.addEventListener("playing", () => {
            const stream = player.captureStream();
            if (stream.getAudioTracks().length === 0) return;
            tap.source?.disconnect();
            tap.source = context.createMediaStreamSource(stream);
            tap.source.connect(analyser);
        });
        setInterval(() => {
            if (player.paused || !tap.source) return;
            analyser.getFloatTimeDomainData(samples);
            let sum = 0;
            for (const sample of samples) sum += sample * sample;
            tap.peak = Math.max(tap.peak, Math.sqrt(sum / samples.length));
            tap.readings += 1;
        }, 20);
        window.signalTap = tap;
    }
    window.signalTap.peak = 0;
    window.signalTap.readings = 0;
    await window.signalTap.context.resume();
}"""


@dataclass
class Playground:
    page: Page
    errors: list[str] = field(default_factory=list)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()

    def figure(self, selector: str) -> float:
        text = self.text(selector)
        match = FIGURE.fullmatch(text)
        assert match, f"{selector} shows {text!r}, not a time like '1.23 s'"
        return float(match.group(1))

    def speak(self, text: str, response_format: str, voice: str = "demo") -> None:
        """Set the form, start recording the player's furthest currentTime and the loudest RMS it plays, click Play."""
        self.page.fill("#text", text)
        self.page.select_option("#voice", voice)
        self.page.select_option("#format", response_format)
        self.page.evaluate(SIGNAL_TAP)
        self.page.evaluate(
            """() => {
                const player = document.getElementById("player");
                clearInterval(window.furthestTimer);
                window.furthest = 0;
                window.furthestTimer = setInterval(
                    () => { window.furthest = Math.max(window.furthest, player.currentTime); }, 50);
            }"""
        )
        self.page.click("#play")

    def wait_until_idle(self) -> None:
        expect(self.page.locator("#play")).to_be_enabled(timeout=SYNTHESIS_MS)

    def furthest_time(self) -> float:
        return self.page.evaluate("window.furthest")

    def assert_played_a_signal(self) -> None:
        """The element played samples that are not silence (since the last speak)."""
        tap = self.page.evaluate("({peak: signalTap.peak, readings: signalTap.readings, state: signalTap.context.state})")
        assert tap["readings"] > 0, f"the audio element never played while measured: {tap}"
        assert tap["peak"] > AUDIBLE_RMS, f"the audio element played silence: {tap}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is required for the playground tests: apt-get install chromium (scripts/test.sh installs it when it can)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


def open_playground(browser: Browser, base_url: str, width: int = 1280, height: int = 800) -> Playground:
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    playground = Playground(page)
    page.on("pageerror", lambda error: playground.errors.append(str(error)))
    # Chromium reports each Content-Security-Policy violation on the console: with the page's strict CSP
    # (inline code allowed by hash only), any such report means the page lost part of its code or style.
    page.on("console", lambda message: playground.errors.extend([message.text] if CSP_REPORT in message.text else []))
    page.goto(f"{base_url}/")
    expect(page.locator("#voice")).to_be_enabled(timeout=60_000)
    return playground


@pytest.fixture
def playground(browser: Browser, server: ServerProcess) -> Iterator[Playground]:
    playground = open_playground(browser, server.base_url)
    yield playground
    playground.page.context.close()


def test_index_is_the_self_contained_page(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (ROOT / "playground" / "index.html").read_bytes()
    assert response.text.lower().startswith("<!doctype html>")
    # No CDN, web font or any other host: the page must work offline and inside the Space's iframe.
    assert re.findall(r"https?://[^\s\"'`<>)]*", response.text) == []


@pytest.mark.timeout(180)
def test_wav_streams_into_the_audio_element(playground: Playground, server: ServerProcess) -> None:
    page = playground.page
    voices = page.eval_on_selector_all("#voice option", "options => options.map(option => option.value)")
    assert "demo" in voices, voices

    with page.expect_response(SPEECH_URL) as response_info:
        playground.speak("こんにちは。今日はいい天気ですね。", "wav")
    assert response_info.value.headers["content-type"] == "audio/wav"
    expect(page.locator("#play")).to_be_disabled()
    expect(page.locator("#stop")).to_be_enabled()

    # The player's clock must move on once the first audio has arrived, while the rest is still coming.
    expect(page.locator("#ttfa")).to_have_text(FIGURE, timeout=SYNTHESIS_MS)
    at_first_audio = page.evaluate("document.getElementById('player').currentTime")
    page.wait_for_function(
        "start => document.getElementById('player').currentTime > start + 0.5", arg=at_first_audio, polling=100, timeout=30_000
    )
    playground.wait_until_idle()
    playground.assert_played_a_signal()

    status = playground.text("#status")
    assert re.fullmatch(r"Done: \d+\.\d\d s of audio\.", status), status
    assert float(status.split()[1]) > 0.1, status
    assert playground.text("#mode").startswith("audio/wav · Streaming")
    ttfa, total = playground.figure("#ttfa"), playground.figure("#total")
    assert 0 < ttfa <= total < SYNTHESIS_MS / 1000, (ttfa, total)

    link = page.locator("#download")
    assert link.get_attribute("href").startswith("blob:")
    assert link.get_attribute("download") == "speech.wav"
    with page.expect_download() as download_info:
        link.click()
    saved = OUTPUT / "playground-download.wav"
    download_info.value.save_as(saved)
    check_downloaded_wav(saved.read_bytes())

    curl, python = playground.text("#curl"), playground.text("#python")
    assert f"{server.base_url}/v1/audio/speech" in curl and '"response_format": "wav"' in curl
    assert f'base_url="{server.base_url}/v1"' in python and 'voice="demo"' in python

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"playground screenshot: {SCREENSHOT}")
    assert playground.errors == []


def check_downloaded_wav(data: bytes) -> None:
    """The download is the received stream with its 0xFFFFFFFF sizes replaced by the real ones."""
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt ", data[:16]
    (riff_size,) = struct.unpack_from("<I", data, 4)
    channels, rate = struct.unpack_from("<HI", data, 22)
    (bits,) = struct.unpack_from("<H", data, 34)
    (data_size,) = struct.unpack_from("<I", data, 40)
    assert (channels, rate, bits) == (1, 32000, 16)
    assert riff_size == len(data) - 8 and data_size == len(data) - 44
    assert data_size > 0 and data_size % 2 == 0


@pytest.mark.timeout(180)
def test_mp3_streams_through_media_source_extensions(playground: Playground) -> None:
    """mp3 is answered as audio/mpeg, which the page appends chunk by chunk to a MediaSource."""
    page = playground.page
    with page.expect_response(SPEECH_URL) as response_info:
        playground.speak("こんにちは。", "mp3")
    response = response_info.value
    assert (response.status, response.headers["content-type"]) == (200, "audio/mpeg")
    playground.wait_until_idle()

    assert playground.text("#status").startswith("Done"), playground.text("#status")
    mode = playground.text("#mode")
    assert mode.startswith("audio/mpeg · Streaming") and "Media Source Extensions" in mode, mode
    assert page.locator("#download").get_attribute("download") == "speech.mp3"
    assert page.locator("#download").get_attribute("href").startswith("blob:")
    ttfa, total = playground.figure("#ttfa"), playground.figure("#total")
    assert 0 < ttfa <= total
    assert playground.furthest_time() > 0.3, "the audio element never played"
    playground.assert_played_a_signal()
    assert playground.errors == []


@pytest.mark.timeout(180)
def test_api_error_is_shown(playground: Playground) -> None:
    page = playground.page
    playground.speak("", "wav")
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=30_000)
    expect(error).to_contain_text("HTTP 400")
    expect(error).to_contain_text("input")
    assert playground.text("#status") == "The request failed."
    expect(page.locator("#play")).to_be_enabled()
    expect(page.locator("#download")).to_be_hidden()
    assert playground.errors == []


@pytest.mark.timeout(180)
def test_api_key_field_when_the_server_requires_one(browser: Browser, strict_server: ServerProcess) -> None:
    playground = open_playground(browser, strict_server.base_url, width=400, height=800)
    page = playground.page
    try:
        expect(page.locator("#key")).to_be_visible()
        playground.speak("こんにちは。", "pcm")
        expect(page.locator("#error")).to_contain_text("HTTP 401", timeout=30_000)

        key = "test-secret-key"
        page.fill("#key", key)
        page.locator("#key").dispatch_event("change")
        assert page.evaluate("sessionStorage.length") == 1
        curl, python = playground.text("#curl"), playground.text("#python")
        assert key not in curl and key not in python
        assert "Authorization: Bearer ••••" in curl

        with page.expect_response(SPEECH_URL) as response_info:
            playground.speak("こんにちは。", "pcm")
        assert response_info.value.headers["content-type"] == "audio/pcm"
        playground.wait_until_idle()
        assert playground.text("#status").startswith("Done"), playground.text("#status")
        assert playground.furthest_time() > 0.3, "the audio element never played"
        playground.assert_played_a_signal()
        assert page.locator("#download").get_attribute("download") == "speech.pcm"
        page.screenshot(path=str(OUTPUT / "playground-narrow.png"), full_page=True)
        assert playground.errors == []
    finally:
        page.context.close()


@pytest.mark.timeout(120)
def test_the_csp_is_enforced_and_the_page_breaks_none_of_it(playground: Playground) -> None:
    """The page loaded and filled its voices without a CSP report (fixture); an injected inline script is blocked."""
    page = playground.page
    assert playground.errors == []
    assert page.evaluate("getComputedStyle(document.querySelector('section')).borderRadius") == "12px"  # its style applied
    page.evaluate(
        """() => {
            const injected = document.createElement("script");
            injected.textContent = "window.injectedRan = true";
            document.body.append(injected);
        }"""
    )
    page.wait_for_timeout(300)
    assert page.evaluate("window.injectedRan === undefined")
    assert any(CSP_REPORT in error for error in playground.errors), playground.errors
