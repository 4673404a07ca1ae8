"""End to end: the OpenAI SDK and real decoders against a real server process on the demo voice."""

from __future__ import annotations

import io
import json
import re
import subprocess
import threading
import time
import wave
from pathlib import Path

import httpx
import openai
import pytest
import soundfile as sf

from engine.text.segmenter import segment
from tests.helpers import LONG, MEDIUM, OUTPUT, SHORT, client, speak, wait_for, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


def test_sdk_create_returns_wav_every_reader_accepts(server: ServerProcess, ffprobe: str) -> None:
    response = client(server).audio.speech.create(model="demo", voice="alloy", input=MEDIUM, response_format="wav")
    data = response.content
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / "sdk-create.wav"
    path.write_bytes(data)

    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    rate, channels, width, seconds = wav_info(data)
    assert (rate, channels) == (32000, 1)
    assert seconds > 0.5

    with wave.open(io.BytesIO(data)) as reader:  # `wave` reports a huge frame count but reads what is there
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (32000, 1, 2)
        frames = reader.readframes(10**9)
    assert len(frames) == len(data) - 44

    probe = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream == {"codec_name": "pcm_s16le", "sample_rate": "32000", "channels": 1}
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"], capture_output=True, check=True
    ).stdout
    assert len(decoded) == len(data) - 44


def test_streaming_response_to_file_and_duration_grows_with_text(server: ServerProcess, tmp_path: Path) -> None:
    durations = []
    for index, text in enumerate([SHORT, MEDIUM, LONG]):
        target = tmp_path / f"stream-{index}.wav"
        with client(server).audio.speech.with_streaming_response.create(
            model="demo", voice="alloy", input=text, response_format="wav"
        ) as response:
            assert response.headers["content-type"] == "audio/wav"
            response.stream_to_file(target)
        samples, rate = sf.read(target, dtype="int16")
        assert rate == 32000 and samples.ndim == 1
        durations.append(samples.size / rate)
    assert durations[0] < durations[1] < durations[2]
    # The demo voice's length rule: about 2 semantic tokens (0.08 s) per phoneme.
    assert 0.5 < durations[0] < 3 and durations[2] > 10


def test_first_audio_arrives_while_later_segments_are_still_synthesised(server: ServerProcess) -> None:
    server.wait_idle()
    before = server.health()["synthesis"]["jobs_run"]
    with httpx.stream(
        "POST", f"{server.base_url}/v1/audio/speech", json={"model": "demo", "input": LONG}, timeout=120
    ) as response:
        assert response.status_code == 200
        received = b""
        chunks = response.iter_raw()
        while len(received) <= 44:
            received += next(chunks)
        # Event order: audio is in our hands, and the server has not finished this request.
        during = server.health()["synthesis"]
        assert during["active_requests"] == 1
        jobs_when_first_audio_arrived = during["jobs_run"] - before
        for chunk in chunks:
            received += chunk
    after = server.health()["synthesis"]["jobs_run"] - before
    assert jobs_when_first_audio_arrived < after
    assert after >= 12  # at least three jobs per segment: T2S, vocoder, and stretching/encoding
    assert wav_info(received)[3] > 10


#: Two segments in one order and in the other: the same duration, different audio. On the demo voice a segment's
#: 16-bit audio depends on its number of tokens only (its random vocoder's output hardly depends on the tokens or
#: the reference: "こんにちは。" and "さようなら。", in either style, give the same bytes), so two texts of one
#: segment each and of equal length would not tell a swap apart.
GOOD_MORNING = "おはようございます。"


def test_concurrent_requests_each_get_their_own_audio(server: ServerProcess) -> None:
    """Four requests at once each get, byte for byte, the audio their text gets when served alone.

    Synthesis is deterministic, so a request served alone is the reference. The first two texts are the same
    two segments in opposite orders: equal durations, different bytes, so audio swapped or mixed between them
    (or between any two streams) is caught, where comparing durations would pass.
    """
    texts = [SHORT + GOOD_MORNING, GOOD_MORNING + SHORT, MEDIUM, "ありがとうございました、また明日。"]
    assert [segment(text) for text in texts[:2]] == [[SHORT, GOOD_MORNING], [GOOD_MORNING, SHORT]]
    alone = [speak(server, text).content for text in texts]
    assert len(set(alone)) == len(texts), "two different texts gave the same audio"
    assert wav_info(alone[0])[3] == wav_info(alone[1])[3]  # equal durations: only the bytes tell them apart

    results: dict[int, bytes] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(texts))

    def run(index: int) -> None:
        try:
            start.wait()
            response = speak(server, texts[index])
            response.raise_for_status()
            results[index] = response.content
        except BaseException as error:  # collected and re-raised in the test thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors
    for index, text in enumerate(texts):
        assert results[index] == alone[index], f"request {index} ({text!r}) got other audio than it gets alone"


#: After a short first segment the segmenter allows a second one of up to 48 units; these kanji compounds fill it
#: with about 80 phonemes, so its decoding loop runs about 160 steps (two tokens per phoneme on the demo voice).
LONG_SECOND_SEGMENT = "新幹線特急券購入手続簡略化検討委員会報告書提出。"
TOKEN_SAMPLES = 1280  # audio samples per semantic token at 32 kHz


def test_client_disconnect_stops_synthesis(server: ServerProcess) -> None:
    """A client that leaves while a long segment is being decoded stops that decoding loop within about one step.

    The client reads the first segment's audio, waits until /health shows the second segment's jobs running,
    and leaves. A server that checks the cancel flag at every decoding step is idle again after a small fraction
    of that segment's synthesis time; one that stops only between jobs first decodes the rest of the segment,
    half or more of it (the vocoder is the rest). The yardstick is the same segment synthesised to the end,
    measured in this test on the same text, so the comparison holds however loaded the machine is.
    """
    text = SHORT + LONG_SECOND_SEGMENT
    assert segment(text) == [SHORT, LONG_SECOND_SEGMENT]
    url = f"{server.base_url}/v1/audio/speech"
    first_segment = speak(server, SHORT).content  # the WAV header and the first segment's audio: synthesis is deterministic

    # The yardstick: from the first segment's last byte to the end of the stream, the server decodes, vocodes and
    # sends the second segment, and serves nothing else.
    server.wait_idle()
    received = bytearray()
    first_done: float | None = None
    jobs_before = server.health()["synthesis"]["jobs_run"]
    with httpx.stream("POST", url, json={"model": "demo", "input": text}, timeout=120) as response:
        for chunk in response.iter_raw():
            received += chunk
            if first_done is None and len(received) >= len(first_segment):
                first_done = time.monotonic()
    assert first_done is not None
    segment_s = time.monotonic() - first_done
    whole_request_jobs = server.wait_idle()["synthesis"]["jobs_run"] - jobs_before
    assert received.startswith(first_segment)
    steps = (len(received) - len(first_segment)) // (2 * TOKEN_SAMPLES)  # one token per decoding step
    assert steps > 100

    server.wait_idle()
    before = server.health()["synthesis"]["jobs_run"]
    with httpx.stream(
        "POST", url, json={"model": "demo", "input": text}, headers={"x-request-id": "disconnect-test"}, timeout=120
    ) as response:
        received = bytearray()
        chunks = response.iter_raw()
        while len(received) < len(first_segment):
            received += next(chunks)
        assert received[: len(first_segment)] == first_segment

        def second_segment_in_progress() -> bool:
            synthesis = server.health()["synthesis"]
            # The second segment is decoded in jobs of a few tokens beside the first one's vocoder (chunked
            # vocoding), so the stop is checked by how little of the request ran, not by an exact job count.
            assert synthesis["jobs_run"] - before < whole_request_jobs / 2, f"the request ran on: {synthesis}"
            return synthesis["running"] >= 1

        wait_for(second_segment_in_progress, 30, "synthesising the second segment")
        left = time.monotonic()
    # Closing the unfinished stream closed the connection. The server must notice and stop at the next step.
    state = server.wait_idle(timeout=120)
    stopped_s = time.monotonic() - left
    ran = state["synthesis"]["jobs_run"] - before
    assert ran < whole_request_jobs / 2, f"{ran} synthesis jobs ran, against {whole_request_jobs} for the whole request"
    assert stopped_s < segment_s / 5, (
        f"synthesis went on {stopped_s:.2f} s after the client left, against {segment_s:.2f} s for the whole segment "
        f"({steps} decoding steps and its vocoder): the decoding loop did not stop at the next step"
    )
    line = server.log_line("client_request_id=disconnect-test")
    assert "outcome=disconnected" in line and " segments=1 " in line

    response = speak(server, SHORT)
    assert response.status_code == 200 and response.content == first_segment


def test_pcm_is_raw_24khz_of_the_same_length(server: ServerProcess) -> None:
    wav = speak(server, MEDIUM, response_format="wav")
    pcm = speak(server, MEDIUM, response_format="pcm")
    assert pcm.headers["content-type"] == "audio/pcm"
    assert pcm.headers["x-sample-rate"] == "24000"
    assert pcm.content[:4] != b"RIFF" and len(pcm.content) % 2 == 0
    wav_seconds = wav_info(wav.content)[3]
    pcm_seconds = len(pcm.content) / 2 / 24000
    assert abs(pcm_seconds - wav_seconds) < 0.01


def test_response_headers_and_request_id_in_log(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        json={"model": "demo", "input": SHORT},
        headers={"x-request-id": "hdr-check-1"},
        timeout=60,
    )
    assert response.headers["x-sample-rate"] == "32000"
    assert response.headers["x-voice"] == "demo"
    # The server's own id; the client's is logged beside it (tests/test_log_injection_e2e.py).
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    line = server.log_line(f"request_id={response.headers['x-request-id']} ")
    for key in ("voice=demo", "chars=6", "segments=1", "ttfa_s=", "total_s=", "audio_s=", "outcome=ok"):
        assert key in line
    assert line.endswith(" client=127.0.0.1 client_request_id=hdr-check-1")
    generated = speak(server, SHORT).headers["x-request-id"]
    assert len(generated) == 32
    server.log_line(f"request_id={generated}")


def test_model_selection_rules(server: ServerProcess) -> None:
    sdk = client(server)
    # An OpenAI model name with exactly one voice loaded uses that voice.
    assert sdk.audio.speech.create(model="tts-1", voice="alloy", input=SHORT, response_format="wav").content[:4] == b"RIFF"
    # A model that is not a voice, with a voice that is.
    assert speak(server, SHORT, model="my-model", voice="demo").headers["x-voice"] == "demo"
    # voice as an object, and unknown extra fields ignored.
    assert speak(server, SHORT, voice={"id": "alloy"}, instructions="cheerful", something_new=[1, 2]).status_code == 200
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.audio.speech.create(model="nobody", voice="alloy", input=SHORT)
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error" and "demo" in error["message"]


def test_broken_voice_is_skipped_with_a_precise_message(server: ServerProcess) -> None:
    assert [model["id"] for model in httpx.get(f"{server.base_url}/v1/models").json()["data"]] == ["demo"]
    line = next(line for line in server.log().splitlines() if "voice=broken" in line)
    assert "outcome=skipped" in line and "t2s_encoder_fp32.onnx" in line


def test_models_endpoints(server: ServerProcess) -> None:
    sdk = client(server)
    listed = sdk.models.list()
    assert [model.id for model in listed.data] == ["demo"]
    model = sdk.models.retrieve("demo")
    assert model.id == "demo" and model.object == "model" and isinstance(model.created, int)
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("missing")


def test_health(server: ServerProcess) -> None:
    health = httpx.get(f"{server.base_url}/health").json()
    assert health["status"] == "healthy" and health["models"] == ["demo"]
