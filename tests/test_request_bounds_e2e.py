"""End to end: no request, and no client address, can hold the server's synthesis for as long as it likes.

The server here allows 20 s of audio per request (MAX_AUDIO_SECONDS) and 2 speech requests per client address
(MAX_STREAMS_PER_CLIENT), with one worker and room for 8 more requests. Its segments are tiny (8 units, under a
second of audio) and SEND_TIMEOUT is 20 s, so that a client reading at a twentieth of real time never makes a single
send wait that long: only its pace (MIN_READ_RATE 0.5) gives it away.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import LONG, MEDIUM, SHORT, speech_socket, start_demo_server, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

MAX_AUDIO_SECONDS = 20
#: The first three sentences of LONG: 234 phonemes of text, 18.7 s of fast speech by the up-front estimate, so it
#: passes; the demo voice makes 2 tokens per phoneme plus 3 per segment, 22.2 s in this server's 8-unit segments.
PASSES_THE_ESTIMATE = LONG[:101]


@pytest.fixture(scope="module")
def bounded_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "MAX_AUDIO_SECONDS": str(MAX_AUDIO_SECONDS),
        "MAX_STREAMS_PER_CLIENT": "2",
        "WORKERS": "1",
        "QUEUE_SIZE": "8",
        "FIRST_SEGMENT_CHARS": "8",
        "SEGMENT_CHARS": "8",
        "SEND_TIMEOUT": "20",
        "MIN_READ_RATE": "0.5",
    }
    process = start_demo_server("bounded", tmp_path_factory.mktemp("empty-models"), env)
    yield process
    process.stop()


def speech_url(server: ServerProcess) -> str:
    return f"{server.base_url}/v1/audio/speech"


def test_a_text_that_would_pass_the_limit_even_spoken_fast_is_refused_up_front(bounded_server: ServerProcess) -> None:
    text = LONG * 2  # about 45 s of fast speech: refused
    refused = httpx.post(speech_url(bounded_server), json={"model": "demo", "input": text}, timeout=60)
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("audio_too_long", "input", "invalid_request_error")
    assert "MAX_AUDIO_SECONDS" in error["message"]

    sdk = openai.OpenAI(base_url=f"{bounded_server.base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.audio.speech.create(model="demo", voice="alloy", input=text)
    assert raised.value.code == "audio_too_long"
    # The limit counts audio at the model's own pace: speed 4 buys no more synthesis (facf13a allowed 4x the limit).
    assert float(error["message"].split("at least ")[1].split(" s")[0]) < MAX_AUDIO_SECONDS * 4
    fast = httpx.post(speech_url(bounded_server), json={"model": "demo", "input": text, "speed": 4}, timeout=60)
    assert fast.status_code == 400 and fast.json()["error"]["code"] == "audio_too_long"


def test_synthesis_stops_at_the_limit_and_the_cut_is_visible(bounded_server: ServerProcess) -> None:
    """PASSES_THE_ESTIMATE passes the up-front estimate, but the demo voice is a little slower than fast speech:
    its audio would last longer than 20 s. The stream stops at the limit and the connection is broken, so no client
    takes the audio for the whole text."""
    received = bytearray()
    body = {"model": "demo", "input": PASSES_THE_ESTIMATE}
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", speech_url(bounded_server), json=body, timeout=120) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            for chunk in response.iter_raw():
                received += chunk
    line = bounded_server.log_line(f"request_id={request_id} ")
    assert "outcome=audio_limit" in line
    audio_s = float(line.split(" audio_s=")[1].split()[0])
    assert 0 < audio_s <= MAX_AUDIO_SECONDS
    assert (len(received) - 44) / 64000 == pytest.approx(audio_s, abs=0.02)  # what was sent is what was made

    whole = httpx.post(speech_url(bounded_server), json={"model": "demo", "input": MEDIUM}, timeout=120)
    assert whole.status_code == 200 and wav_info(whole.content)[3] < MAX_AUDIO_SECONDS  # shorter texts are whole


def open_unread_stream(server: ServerProcess, source: str, receive_buffer: int | None = None) -> socket.socket:
    """A speech request from `source` whose audio is not read yet: it keeps its place while it lasts."""
    sock = speech_socket(server, PASSES_THE_ESTIMATE, source, receive_buffer)
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


def test_one_address_cannot_take_every_place(bounded_server: ServerProcess) -> None:
    """Ten places (1 worker + 8 waiting): one address gets two of them, however many requests it sends."""
    bounded_server.wait_idle()
    greedy = [open_unread_stream(bounded_server, "127.0.0.2") for _ in range(2)]
    try:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60) as same:
            third = same.post(speech_url(bounded_server), json={"model": "demo", "input": SHORT})
        assert third.status_code == 429
        assert third.json()["error"]["code"] == "too_many_concurrent_requests"
        assert int(third.headers["retry-after"]) >= 1
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=120) as other:
            served = other.post(speech_url(bounded_server), json={"model": "demo", "input": SHORT})
        assert served.status_code == 200 and wav_info(served.content)[3] > 0
    finally:
        for sock in greedy:
            sock.close()
    bounded_server.wait_idle()
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=120) as same:
        again = same.post(speech_url(bounded_server), json={"model": "demo", "input": SHORT})
    assert again.status_code == 200  # its places came back when its requests ended


def test_a_client_reading_far_slower_than_real_time_is_dropped_though_it_never_stops(bounded_server: ServerProcess) -> None:
    """3.2 kB/s is a twentieth of real time for 32 kHz WAV. Each send waits a few seconds at most (a segment is
    under a second of audio), far from SEND_TIMEOUT, so by that rule alone this client would keep its slot for the
    whole text; but once it is SEND_TIMEOUT seconds behind half of real time it is dropped. The kernel's buffers
    (the server's send buffer is bounded to 512 KiB) let it look about 9 s of audio ahead before that shows."""
    bounded_server.wait_idle()
    jobs_before = bounded_server.health()["synthesis"]["jobs_run"]
    sock = open_unread_stream(bounded_server, "127.0.0.4", receive_buffer=4096)
    began = time.monotonic()
    head = sock.recv(4096)
    request_id = head.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
    read = len(head)
    try:
        while True:  # 320 bytes every 0.1 s: it never stops reading
            data = sock.recv(320)
            if not data:
                break
            read += len(data)
            time.sleep(0.1)
            assert time.monotonic() - began < 240, "the slow reader was never dropped"
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    line = bounded_server.log_line(f"request_id={request_id} ")
    assert "outcome=client_too_slow" in line
    sent_s = float(line.split(" audio_s=")[1].split()[0])
    assert sent_s < 20  # PASSES_THE_ESTIMATE makes more than 20 s of audio: the drop came before the end of the text
    assert read / 64000 < sent_s  # the client had not even read all it was sent
    state = bounded_server.wait_idle(timeout=10)
    jobs = state["synthesis"]["jobs_run"]
    assert jobs > jobs_before
    time.sleep(1)
    assert bounded_server.health()["synthesis"]["jobs_run"] == jobs  # nothing more is synthesised for it
