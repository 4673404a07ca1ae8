"""GET /metrics on real servers, scraped with httpx and parsed with prometheus_client's own parser.

Each test scrapes, does real requests (the OpenAI SDK, httpx, a raw socket), waits until no stream is active
(read from the scrape itself), scrapes again and checks that every counter moved by exactly what was done:
the request counter series by series (its own scrapes included), 429s by cause, disconnects by stage, speech
outcomes, the histograms' counts, and the audio seconds against the audio the clients received.

The server has an API key, one worker and room for two requests (no waiting line), at most one per client, a rate limit of 2 per
minute, and trusts X-Forwarded-For from loopback, so each part of a test is a different client address.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import soundfile as sf
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LONG, MEDIUM, SHORT, SPEECH, start_demo_server, wait_for
from tests.server_process import ServerProcess

KEY = "metrics-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def metrics_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "API_KEY": KEY,
        "WORKERS": "1",
        "QUEUE_SIZE": "1",
        "MAX_STREAMS_PER_CLIENT": "1",
        "MAX_QUEUE_WAIT": "0",  # no waiting line: a request finding both places taken is refused at once (server_busy)
        "RATE_LIMIT_PER_MINUTE": "2",
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    process = start_demo_server("metrics", tmp_path_factory.mktemp("metrics-models"), env)
    yield process
    process.stop()


class Scraper:
    """Scrapes /metrics and counts its own scrapes (each one is a request the next scrape counts)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.scrapes = 0

    def scrape(self) -> Samples:
        response = httpx.get(f"{self.server.base_url}/metrics", headers=AUTH, timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == CONTENT_TYPE_LATEST
        self.scrapes += 1
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def idle(self) -> Samples:
        """A scrape taken once no speech request is in progress (so every finished one has been counted)."""
        samples: Samples = {}

        def quiet() -> bool:
            nonlocal samples
            samples = self.scrape()
            return value(samples, "gsv_active_streams") == 0 and value(samples, "gsv_synthesis_jobs_running") == 0

        wait_for(quiet, 60, "idle")
        return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def moved(before: Samples, after: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Each series of `name` whose value changed, by how much."""
    changes = {}
    for (sample, labels), now in after.items():
        if sample == name:
            change = now - before.get((sample, labels), 0.0)
            if change:
                changes[labels] = round(change, 6)
    return changes


def requests_key(endpoint: str, method: str, status: int, fmt: str = "") -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"endpoint": endpoint, "method": method, "status": str(status), "format": fmt}.items()))


def sdk(server: ServerProcess, address: str) -> openai.OpenAI:
    """The OpenAI SDK as one client address, without retries (each request must be exactly one)."""
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0, default_headers={"x-forwarded-for": address}
    )


def speech_body(text: str, **fields: object) -> dict:
    return {"model": "demo", "input": text, **fields}


def post_speech(server: ServerProcess, address: str, body: dict) -> httpx.Response:
    headers = {**AUTH, "x-forwarded-for": address}
    return httpx.post(f"{server.base_url}{SPEECH}", json=body, headers=headers, timeout=120)


@pytest.mark.e2e
def test_requests_speech_figures_and_audio_seconds_move_by_what_was_done(metrics_server: ServerProcess) -> None:
    server = metrics_server
    scraper = Scraper(server)
    before = scraper.idle()
    scrapes_before = scraper.scrapes

    wav = sdk(server, "10.1.0.1").audio.speech.create(model="demo", voice="alloy", input=MEDIUM, response_format="wav")
    info = sf.info(io.BytesIO(wav.content))
    wav_seconds = info.frames / info.samplerate
    raw = sdk(server, "10.1.0.2").audio.speech.with_raw_response.create(
        model="demo", voice="alloy", input=SHORT, response_format="pcm"
    )
    pcm = raw.parse().content
    pcm_seconds = len(pcm) / 2 / int(raw.headers["x-sample-rate"])
    assert wav_seconds > 0.5 and pcm_seconds > 0.2

    assert httpx.get(f"{server.base_url}/v1/nothing-here", headers=AUTH, timeout=10).status_code == 404
    assert post_speech(server, "10.1.0.3", speech_body("あ", speed=9)).status_code == 400
    assert httpx.delete(f"{server.base_url}/v1/models/demo", headers=AUTH, timeout=10).status_code == 405
    assert httpx.get(f"{server.base_url}/v1/models", timeout=10).status_code == 401
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    assert httpx.options(f"{server.base_url}{SPEECH}", headers=preflight, timeout=10).status_code == 204

    after = scraper.idle()
    assert moved(before, after, "gsv_requests_total") == {
        requests_key(SPEECH, "POST", 200, "wav"): 1,
        requests_key(SPEECH, "POST", 200, "pcm"): 1,
        requests_key("other", "GET", 404): 1,
        requests_key(SPEECH, "POST", 400): 1,
        requests_key("/v1/models/{id}", "DELETE", 405): 1,
        requests_key("/v1/models", "GET", 401): 1,
        requests_key(SPEECH, "OPTIONS", 204): 1,
        requests_key("/metrics", "GET", 200): scraper.scrapes - scrapes_before,
    }
    for histogram in ("gsv_time_to_first_audio_seconds", "gsv_request_duration_seconds", "gsv_real_time_factor"):
        assert moved(before, after, f"{histogram}_count") == {(): 2}, histogram
    assert moved(before, after, "gsv_speech_outcomes_total") == {(("outcome", "ok"),): 2}
    assert moved(before, after, "gsv_rejected_total") == {}
    assert moved(before, after, "gsv_disconnects_total") == {}
    audio = moved(before, after, "gsv_audio_seconds_total")
    assert list(audio) == [(("voice", "demo"),)]
    assert audio[(("voice", "demo"),)] == pytest.approx(wav_seconds + pcm_seconds, abs=1e-4)
    first_audio = moved(before, after, "gsv_time_to_first_audio_seconds_sum")[()]
    total = moved(before, after, "gsv_request_duration_seconds_sum")[()]
    assert 0 < first_audio < total
    # The real-time factor of each request is its total time over its audio: both are within these bounds.
    rtf = moved(before, after, "gsv_real_time_factor_sum")[()]
    assert total / max(wav_seconds, pcm_seconds) <= rtf <= total / min(wav_seconds, pcm_seconds)


def hold_stream(server: ServerProcess, address: str) -> socket.socket:
    """A long speech stream on a raw socket, open once its first audio has arrived; the caller closes it (a disconnect)."""
    body = json.dumps(speech_body(LONG * 6, response_format="pcm")).encode()
    head = (
        f"POST {SPEECH} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY}\r\nX-Forwarded-For: {address}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    connection = socket.create_connection(("127.0.0.1", port(server)), timeout=60)
    connection.sendall(head.encode() + body)
    received = b""
    while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < 4800:  # 0.1 s of audio
        chunk = connection.recv(65536)
        assert chunk, received[:300]
        received += chunk
    assert received.startswith(b"HTTP/1.1 200 "), received[:300]
    return connection


def port(server: ServerProcess) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


@pytest.mark.e2e
def test_rejections_by_cause_and_disconnects_move_by_what_was_done(metrics_server: ServerProcess) -> None:
    server = metrics_server
    scraper = Scraper(server)
    before = scraper.idle()
    scrapes_before = scraper.scrapes

    # The rate limit (2 per minute per address): two bad requests, then a 429.
    for _ in range(2):
        assert post_speech(server, "10.2.0.4", speech_body("あ", speed=9)).status_code == 400
    limited = post_speech(server, "10.2.0.4", speech_body("あ"))
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limit_exceeded")

    first = hold_stream(server, "10.2.0.1")
    second: socket.socket | None = None
    try:
        # One stream per client address.
        own_share = post_speech(server, "10.2.0.1", speech_body("あ"))
        assert (own_share.status_code, own_share.json()["error"]["code"]) == (429, "too_many_concurrent_requests")
        second = hold_stream(server, "10.2.0.2")
        # WORKERS + QUEUE_SIZE = 2 requests in progress: a third client finds the server busy.
        busy = post_speech(server, "10.2.0.3", speech_body("あ"))
        assert (busy.status_code, busy.json()["error"]["code"]) == (429, "rate_limit_exceeded")
        assert "busy" in busy.json()["error"]["message"]
        during = scraper.scrape()
        assert value(during, "gsv_active_streams") == 2
        assert value(during, "gsv_synthesis_jobs_running") <= 1

        # A client that sends part of its body and leaves: no response, one disconnect before it.
        with socket.create_connection(("127.0.0.1", port(server))) as raw:
            raw.sendall(
                f"POST {SPEECH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nX-Forwarded-For: 10.2.0.5\r\n"
                'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"model": '.encode()
            )
        wait_for(
            lambda: (
                value(scraper.scrape(), "gsv_disconnects_total", stage="before_response")
                == value(before, "gsv_disconnects_total", stage="before_response") + 1
            ),
            10,
            "the early disconnect counted",
        )
    finally:  # both streams still running: closing them is the clients leaving mid-stream
        first.close()
        if second is not None:
            second.close()

    after = scraper.idle()
    assert moved(before, after, "gsv_requests_total") == {
        requests_key(SPEECH, "POST", 400): 2,
        requests_key(SPEECH, "POST", 429): 3,
        requests_key(SPEECH, "POST", 200, "pcm"): 2,
        requests_key("/metrics", "GET", 200): scraper.scrapes - scrapes_before,
    }
    assert moved(before, after, "gsv_rejected_total") == {
        (("cause", "rate_limit"),): 1,
        (("cause", "client_limit"),): 1,
        (("cause", "server_busy"),): 1,
    }
    assert moved(before, after, "gsv_disconnects_total") == {(("stage", "before_response"),): 1, (("stage", "during_stream"),): 2}
    assert moved(before, after, "gsv_speech_outcomes_total") == {(("outcome", "disconnected"),): 2}
    for histogram in ("gsv_time_to_first_audio_seconds", "gsv_request_duration_seconds"):
        assert moved(before, after, f"{histogram}_count") == {(): 2}, histogram
    assert moved(before, after, "gsv_real_time_factor_count") == {}  # only for streams that finished whole
    assert moved(before, after, "gsv_audio_seconds_total")[(("voice", "demo"),)] > 0


@pytest.mark.e2e
def test_state_gauges_and_voice_load_time(metrics_server: ServerProcess) -> None:
    samples = Scraper(metrics_server).idle()
    assert value(samples, "gsv_voices_ready") == 1
    assert value(samples, "gsv_draining") == 0
    assert value(samples, "gsv_queue_depth") == 0
    line = metrics_server.log_line("voice=demo outcome=loaded")
    logged = float(line.split("load_s=")[1].split()[0])
    assert value(samples, "gsv_voice_load_seconds", voice="demo") == pytest.approx(logged, abs=0.05)


@pytest.mark.e2e
def test_metrics_need_the_api_key_sent_as_prometheus_sends_it(metrics_server: ServerProcess) -> None:
    url = f"{metrics_server.base_url}/metrics"
    missing = httpx.get(url, timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}, timeout=10).status_code == 401
    scraped = httpx.get(url, headers={"authorization": f"Bearer {KEY}"}, timeout=10)
    assert scraped.status_code == 200 and "gsv_requests_total" in scraped.text


@pytest.mark.e2e
def test_metrics_open_serves_them_without_the_key_and_nothing_else(demo_root: Path, tmp_path: Path) -> None:
    server = start_demo_server("metrics-open", tmp_path, {"API_KEY": KEY, "METRICS_OPEN": "1"})
    try:
        scraped = httpx.get(f"{server.base_url}/metrics", timeout=10)
        assert scraped.status_code == 200 and scraped.headers["content-type"] == CONTENT_TYPE_LATEST
        assert {family.name for family in text_string_to_metric_families(scraped.text)} >= {"gsv_requests", "gsv_voices_ready"}
        assert httpx.get(f"{server.base_url}/v1/models", timeout=10).status_code == 401
    finally:
        server.stop()


@pytest.mark.e2e
def test_metrics_are_open_without_an_api_key(server: ServerProcess) -> None:
    scraped = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert scraped.status_code == 200 and scraped.headers["content-type"] == CONTENT_TYPE_LATEST
    assert scraped.headers["cache-control"] == "no-store"
