"""The engine in this process, on the real demo voice: length rule, token cap, cancellation, faults, fairness.

Some tests wrap one ONNX session in a thin proxy to count steps or to inject a failure; the
model work itself is always the real session's.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from tests.server_process import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_voice(demo_root: Path):
    from engine.genie import import_genie
    from engine.voice import SharedModels, load_voice
    from engine.voice_folder import inspect_voice

    import_genie(demo_root / "GenieData")
    shared = SharedModels.load(demo_root / "GenieData", threads=2)
    return load_voice(inspect_voice(demo_root / "demo"), shared, threads=2)


class CountingDecoder:
    """Delegates to the real stage decoder; counts steps and can act at a given step."""

    def __init__(self, real, on_step=None) -> None:
        self.real, self.on_step, self.steps = real, on_step, 0

    def get_inputs(self):
        return self.real.get_inputs()

    def run(self, outputs, feed):
        self.steps += 1
        result = self.real.run(outputs, feed)
        return self.on_step(self.steps, result) if self.on_step else result


def test_length_rule_gives_two_tokens_per_phoneme(demo_voice) -> None:
    from engine.g2p import text_to_phonemes
    from tests.engine_helpers import synthesize

    for text in ("こんにちは。", "今日はとてもいい天気ですね、散歩に行きましょう。"):
        phonemes = text_to_phonemes(text, "Japanese")
        result = synthesize(demo_voice, phonemes, threading.Event())
        assert result.tokens == 2 * phonemes.count + 1
        assert not result.capped
        assert result.audio.dtype == np.float32 and result.audio.size == result.tokens * 1280
        assert np.all(np.isfinite(result.audio))


def test_token_cap_stops_a_voice_that_never_emits_eos(demo_voice, demo_root: Path) -> None:
    """The stage decoder from Genie's template, without the length rule: random weights never stop."""
    from engine.g2p import text_to_phonemes
    from engine.genie import package_data_dir
    from engine.synthesis import token_cap
    from engine.voice import load_session
    from tests.engine_helpers import synthesize

    template = package_data_dir() / "v2/Models/t2s_stage_decoder_fp32.onnx"
    unruled = load_session(template, demo_root / "demo/tts_models/t2s_shared_fp16.bin", threads=2)
    voice = dataclasses.replace(demo_voice, stage_decoder=unruled)
    phonemes = text_to_phonemes("はい。", "Japanese")
    result = synthesize(voice, phonemes, threading.Event())
    assert result.capped
    assert result.tokens == token_cap(phonemes.count)


def test_cancellation_stops_within_one_decoding_step(demo_voice) -> None:
    from engine.g2p import text_to_phonemes
    from engine.synthesis import Cancelled
    from tests.engine_helpers import synthesize

    cancel = threading.Event()

    def cancel_at_five(step, result):
        if step == 5:
            cancel.set()
        return result

    decoder = CountingDecoder(demo_voice.stage_decoder, cancel_at_five)
    voice = dataclasses.replace(demo_voice, stage_decoder=decoder)
    with pytest.raises(Cancelled):
        synthesize(voice, text_to_phonemes("今日はとてもいい天気ですね。", "Japanese"), cancel)
    assert decoder.steps == 5


def test_stop_at_step_zero_never_replays_the_reference(demo_voice) -> None:
    from engine.g2p import text_to_phonemes
    from tests.engine_helpers import synthesize

    def stop_now(step, result):
        y, y_emb, _, *cache = result
        return [y, y_emb, np.array(True), *cache]

    voice = dataclasses.replace(demo_voice, stage_decoder=CountingDecoder(demo_voice.stage_decoder, stop_now))
    result = synthesize(voice, text_to_phonemes("こんにちは。", "Japanese"), threading.Event())
    reference_samples = demo_voice.reference.audio_32k.shape[1]
    assert result.tokens == 2  # the first-stage token and the one sampled at step 0
    assert result.audio.size == 2 * 1280 < reference_samples // 10


class FailingVocoder:
    """The real vocoder, failing from its `fail_from`-th call on (a fault in the middle of a response)."""

    def __init__(self, real, fail_from: int) -> None:
        self.real, self.fail_from, self.calls = real, fail_from, 0

    def run(self, outputs, feed):
        self.calls += 1
        if self.calls >= self.fail_from:
            raise RuntimeError("injected vocoder failure")
        return self.real.run(outputs, feed)


@pytest.fixture(scope="module")
def inprocess_server(demo_voice, demo_root: Path) -> Iterator[str]:
    """The real ASGI app under uvicorn in a thread: voices 'demo' and 'faulty', one worker."""
    from api.app import Application
    from engine.registry import VoiceRegistry
    from settings import Settings

    faulty_folder = dataclasses.replace(demo_voice.folder, name="faulty")
    faulty = dataclasses.replace(demo_voice, folder=faulty_folder, vocoder=FailingVocoder(demo_voice.vocoder, fail_from=2))
    app = Application(Settings(workers=1, queue_size=8), demo_root / "GenieData", [])
    app.voices.registry = VoiceRegistry([demo_voice, faulty])
    app.voices.state = "ready"
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_failure_after_streaming_began_breaks_the_connection(inprocess_server: str) -> None:
    """The faulty voice's vocoder fails on its second segment; a request running beside it is unaffected."""
    text = "こんにちは。今日はとてもいい天気ですね。散歩に行きましょう。"
    alone = httpx.post(f"{inprocess_server}/v1/audio/speech", json={"model": "demo", "input": text}, timeout=60).content
    beside: dict[str, bytes] = {}

    def healthy_request() -> None:
        beside["audio"] = httpx.post(
            f"{inprocess_server}/v1/audio/speech", json={"model": "demo", "input": text}, timeout=120
        ).content

    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream(
            "POST", f"{inprocess_server}/v1/audio/speech", json={"model": "faulty", "input": text}, timeout=60
        ) as response:
            assert response.status_code == 200
            neighbour = threading.Thread(target=healthy_request)
            neighbour.start()
            for chunk in response.iter_raw():
                received += chunk
    neighbour.join(timeout=120)
    assert received[:4] == b"RIFF" and len(received) > 44  # the first segment arrived, then the break
    assert len(received) < len(alone)
    assert beside["audio"] == alone  # the neighbour got its complete audio, byte for byte


def test_new_short_request_is_served_between_segments_of_a_long_one(inprocess_server: str) -> None:
    """One worker: the short request must finish while the long one still has segments to go."""
    long_text = "むかしむかし、ある山のふもとに、おじいさんとおばあさんが住んでいました。" * 4
    with httpx.stream(
        "POST", f"{inprocess_server}/v1/audio/speech", json={"model": "demo", "input": long_text}, timeout=120
    ) as long:
        iterator = long.iter_raw()
        first = next(iterator)
        while len(first) <= 44:
            first += next(iterator)
        short = httpx.post(f"{inprocess_server}/v1/audio/speech", json={"model": "demo", "input": "はい。"}, timeout=60)
        assert short.status_code == 200
        health = httpx.get(f"{inprocess_server}/health").json()["synthesis"]
        assert health["active_requests"] == 1  # the long request is still being synthesised
        rest = b"".join(iterator)
    assert len(rest) > 0


def test_a_later_segment_that_fails_g2p_is_skipped_with_a_log_line(demo_voice, monkeypatch, caplog) -> None:
    """Genie's Chinese G2P raises IndexError on some interjections; here the failure is injected."""
    import anyio

    from engine import speech
    from engine.scheduler import Scheduler

    real = speech.text_to_phonemes

    def fragile(text: str, language: str):
        if "ぬ" in text:
            raise IndexError("list index out of range")
        return real(text, language)

    monkeypatch.setattr(speech, "text_to_phonemes", fragile)

    async def run() -> tuple[speech.SpeechReport, int]:
        plan = await speech.plan_speech(demo_voice, "こんにちは。ぬぬぬぬぬ。ありがとう。", 24, 120, "g2p-test")
        scheduler = Scheduler(workers=1, queue_size=1)
        ticket = scheduler.admit()
        report = speech.SpeechReport()
        chunks = []

        async def deliver(audio) -> None:
            chunks.append(audio)

        await speech.speak(plan, scheduler, ticket, report, "g2p-test", deliver)
        return report, len(chunks)

    report, chunks = anyio.run(run)
    assert (report.segments_done, report.segments_skipped, chunks) == (2, 1, 2)
    assert any("request_id=g2p-test segment_skipped=g2p_error" in record.getMessage() for record in caplog.records)


def test_a_style_uses_its_own_reference_in_both_stages(demo_voice) -> None:
    """The demo's random vocoder barely depends on its conditioning, so check what each stage is fed."""
    import anyio

    from engine.speech import plan_speech
    from engine.synthesis import text_to_tokens, vocode

    assert list(demo_voice.styles) == ["calm"]
    calm = demo_voice.styles["calm"]
    assert not np.array_equal(calm.ssl, demo_voice.reference.ssl) and not np.array_equal(calm.ge, demo_voice.reference.ge)

    plan = anyio.run(plan_speech, demo_voice, "こんにちは。", 24, 120, "style-test", "calm")
    assert plan.reference is calm
    default_tokens = text_to_tokens(demo_voice, plan.first_phonemes, demo_voice.reference, threading.Event())
    calm_tokens = text_to_tokens(demo_voice, plan.first_phonemes, plan.reference, threading.Event())
    assert calm_tokens.reference is calm
    assert not np.array_equal(default_tokens.values, calm_tokens.values)  # the T2S prompt comes from the clip

    fed: list[dict] = []

    class Recording:
        def run(self, outputs, feed):
            fed.append(feed)
            return demo_voice.vocoder.run(outputs, feed)

    vocode(dataclasses.replace(demo_voice, vocoder=Recording()), calm_tokens)
    assert fed[0]["ge"] is calm.ge and fed[0]["ge_advanced"] is calm.ge_advanced
