"""End to end: the limits count what is spoken, and no audio is lost silently (every word is spoken, or the
request is refused before its 200, or the connection breaks; the log line's `outcome=` says which).

Real servers (tests/faulty_server.py: server.py with a fault the demo voice lacks) and real clients (the OpenAI SDK,
httpx). The rules themselves, on a stand-in G2P, are in tests/test_spoken_limits.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import client, start_demo_server
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

DIGITS = "999999999999999 " * 256  # 4 KB: about 1,230 s of speech on the Japanese demo voice, 20 minutes to make


def faulty_server(name: str, fault: str, tmp_path_factory: pytest.TempPathFactory, **env: str) -> ServerProcess:
    models = tmp_path_factory.mktemp(f"{name}-models")
    return start_demo_server(name, models, {"FAULT": fault, **env}, command=("tests/faulty_server.py",))


@pytest.fixture(scope="module")
def g2p_fault_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Default limits (MAX_AUDIO_SECONDS 1200), the Japanese and English demo voices, G2P failing on 嗯, and segments
    of up to 120 units from the first one on (so that a text of one segment can be as dense as any)."""
    env = {"DEMO_VOICES": "demo,demo-en", "FIRST_SEGMENT_CHARS": "120", "SEGMENT_CHARS": "120"}
    process = faulty_server("g2p-fault", "g2p", tmp_path_factory, **env)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def token_cap_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo voice meeting a token cap of one token per phoneme, as a voice that never ends a segment would."""
    process = faulty_server("token-cap", "token_cap", tmp_path_factory)
    yield process
    process.stop()


def speech_url(server: ServerProcess) -> str:
    return f"{server.base_url}/v1/audio/speech"


def g2p_jobs(server: ServerProcess) -> float:
    response = httpx.get(f"{server.base_url}/metrics", timeout=10)
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    return families["gsv_g2p_jobs"].samples[0].value


def test_a_text_of_digits_is_refused_at_once_for_what_it_would_say(g2p_fault_server: ServerProcess) -> None:
    """4,096 characters that are 1,230 s of speech: facf13a estimated them at 160 s from their characters, sent a
    200 and synthesised for 20 minutes until the audio limit cut the stream."""
    with httpx.stream("POST", speech_url(g2p_fault_server), json={"model": "demo", "input": DIGITS}, timeout=300) as answer:
        assert answer.status_code == 400  # facf13a: 200, then 20 minutes of audio
        error = json.loads(answer.read())["error"]
    assert (error["code"], error["param"], error["type"]) == ("audio_too_long", "input", "invalid_request_error")
    assert "at least 1229 s" in error["message"] and "at most 1200 s" in error["message"]
    sdk = client(g2p_fault_server, max_retries=0, timeout=300)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.audio.speech.create(model="demo", voice="alloy", input=DIGITS, speed=4)  # speed buys no more synthesis
    assert refused.value.code == "audio_too_long"


def test_text_with_nothing_to_say_is_refused_without_a_g2p_job_per_segment(g2p_fault_server: ServerProcess) -> None:
    """`". " * 2048` is 682 segments: facf13a read each one with G2P, under the global G2P lock, before its 400."""
    before = g2p_jobs(g2p_fault_server)
    refused = httpx.post(speech_url(g2p_fault_server), json={"model": "demo", "input": ". " * 2048}, timeout=120)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "nothing_to_say"
    assert g2p_jobs(g2p_fault_server) == before  # not one G2P job
    spoken = httpx.post(speech_url(g2p_fault_server), json={"model": "demo", "input": "今日は。明日は。明後日は。"}, timeout=120)
    assert spoken.status_code == 200
    assert g2p_jobs(g2p_fault_server) == before + 3  # the counter counts: one job per segment, each read once


def test_a_g2p_error_is_a_400_before_any_audio_never_a_shorter_stream(g2p_fault_server: ServerProcess) -> None:
    """facf13a skipped the segment G2P failed on and sent the rest as a whole file, logged outcome=ok."""
    text = "こんにちは。嗯、そうですね。ありがとうございました。"
    answer = httpx.post(speech_url(g2p_fault_server), json={"model": "demo", "input": text}, timeout=120)
    assert answer.status_code == 400, "the request was answered 200 without the words G2P could not read"
    error = answer.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("unreadable_input", "input", "invalid_request_error")
    assert "嗯" in error["message"]
    request_id = answer.headers["x-request-id"]
    line = g2p_fault_server.log_line(f"request_id={request_id} g2p_error")
    assert "IndexError" in line
    assert f"request_id={request_id} " not in "".join(
        entry for entry in g2p_fault_server.log().splitlines() if "outcome=ok" in entry
    )
    sdk = client(g2p_fault_server, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.audio.speech.create(model="demo", voice="alloy", input=text)
    assert refused.value.code == "unreadable_input"


def test_a_dense_text_is_spoken_whole(g2p_fault_server: ServerProcess) -> None:
    """English number words are about 7 phonemes a digit: 112 characters of them, one segment of 805 phonemes, are
    1,611 tokens at the demo voice's pace, past the hard cap of 1,500, so facf13a cut its end and sent the rest as
    whole (outcome=ok). Segments are now bounded in phonemes: every phoneme gets its 2 tokens."""
    events = []
    with client(g2p_fault_server, max_retries=0, timeout=600).audio.speech.with_streaming_response.create(
        model="demo-en", voice="alloy", input="999999999999999 " * 7, stream_format="sse", response_format="pcm"
    ) as response:
        request_id = response.headers["x-request-id"]
        events = [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")]
    usage = events[-1]["usage"]
    assert events[-1]["type"] == "speech.audio.done"
    assert usage["input_tokens"] > 750  # phonemes: more than one 1,500-token segment could hold at 2 per phoneme
    assert usage["output_tokens"] >= 2 * usage["input_tokens"], usage  # no segment cut short
    line = g2p_fault_server.log_line(f"request_id={request_id} voice=")
    assert "outcome=ok" in line and "token_cap_reached" not in g2p_fault_server.log()


def test_a_token_cap_hit_breaks_the_connection_with_its_outcome_logged(token_cap_server: ServerProcess) -> None:
    """facf13a cut the segment at its cap, went on with the next one and ended the stream as complete (outcome=ok)."""
    received = bytearray()
    text = "こんにちは。今日はとてもいい天気ですね。"
    with pytest.raises(httpx.RemoteProtocolError):  # the stream was ended cleanly instead
        with httpx.stream("POST", speech_url(token_cap_server), json={"model": "demo", "input": text}, timeout=120) as answer:
            assert answer.status_code == 200
            request_id = answer.headers["x-request-id"]
            for chunk in answer.iter_raw():
                received += chunk
    line = token_cap_server.log_line(f"request_id={request_id} voice=")  # the request's own line
    assert "outcome=token_cap" in line
    assert f"request_id={request_id} segment=" in token_cap_server.log_line("token_cap_reached")
    sdk = client(token_cap_server, max_retries=0)
    with pytest.raises((openai.APIConnectionError, httpx.TransportError)):  # a broken transfer, not a short file
        sdk.audio.speech.create(model="demo", voice="alloy", input=text).read()
