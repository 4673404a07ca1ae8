"""Limits that count what is spoken, and no audio lost silently: planning (engine/synthesis/speech.py plan_speech) on a
stand-in G2P whose phoneme counts the tests choose, so the rules show without loading a voice.

The end-to-end tests, on the real demo voice through a real server, are in tests/test_spoken_e2e.py.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import anyio
import numpy as np
import orjson
import pytest

from api.errors import as_api_error
from engine.synthesis import speech
from engine.synthesis.audio_budget import SECONDS_PER_PHONEME, TooMuchAudio, fast_speech_seconds
from engine.synthesis.scheduler import Scheduler
from engine.synthesis.vocoding import HARD_TOKEN_CAP, MAX_SEGMENT_PHONEMES, SLOW_TOKENS_PER_PHONEME, token_cap
from engine.text.g2p import Phonemes
from tests.helpers import admitted

DIGITS = "999999999999999 " * 256  # 4 KB; about 1,230 s of speech on the Japanese demo voice


class StandInG2P:
    """`text_to_phonemes` with `per_char` phonemes per letter or digit (plus the segment's prefix), counting calls."""

    def __init__(self, per_char: int, fails_on: str | None = None) -> None:
        self.per_char, self.fails_on = per_char, fails_on
        self.calls: list[str] = []

    def __call__(self, text: str, language: str, forced: str | None = None) -> Phonemes:
        self.calls.append(text)
        if self.fails_on and self.fails_on in text:
            raise IndexError("list index out of range")  # what Genie's Chinese G2P raises on 嗯 in tone sandhi
        count = 1 + self.per_char * sum(char.isalnum() for char in text)
        symbols = (".",) + ("a",) * (count - 1)
        return Phonemes(np.zeros((1, count), dtype=np.int64), np.zeros((count, 1024), dtype=np.float32), symbols)


def plan(monkeypatch: pytest.MonkeyPatch, g2p: StandInG2P, text: str, **options: object) -> speech.SpeechPlan:
    monkeypatch.setattr(speech, "text_to_phonemes", g2p)
    voice = SimpleNamespace(language="ja", reference_for=lambda style: None)
    return anyio.run(lambda: speech.plan_speech(voice, text, 24, 120, "test", **options))  # type: ignore[arg-type]


def test_the_estimate_counts_phonemes_not_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Digits read as numbers are about 4 phonemes each: 4,096 characters of them are over 1,200 s of speech,
    which a count of characters (160 s) let through to 20 minutes of synthesis on facf13a."""
    assert fast_speech_seconds(1000) == pytest.approx(1000 * SECONDS_PER_PHONEME) == pytest.approx(80)
    with pytest.raises(TooMuchAudio) as refused:
        plan(monkeypatch, StandInG2P(per_char=4), DIGITS, max_seconds=1200)
    assert refused.value.likely_seconds == pytest.approx(3840 * 4 * SECONDS_PER_PHONEME)  # 1,229 s
    error = as_api_error(refused.value)
    assert error is not None and (error.status, error.code, error.param) == (400, "audio_too_long", "input")
    # The same characters at 1 phoneme each (307 s) are not refused: the figure is phonemes, not characters.
    assert plan(monkeypatch, StandInG2P(per_char=1), DIGITS, max_seconds=1200).token_budget == 30000


def test_the_estimate_leaves_out_the_pause_put_before_each_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The text's phonemes are what it takes to say it: the server's own '。' per segment is not the text's."""
    many = plan(monkeypatch, StandInG2P(per_char=1), "ab, " * 200)  # 400 phonemes of text in many segments
    assert len(many.segments) > 5
    with pytest.raises(TooMuchAudio) as refused:
        plan(monkeypatch, StandInG2P(per_char=1), "ab, " * 200, max_seconds=31)
    assert refused.value.likely_seconds == pytest.approx(400 * SECONDS_PER_PHONEME)  # 32 s


def test_segments_are_bounded_in_phonemes_and_cut_between_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dense segment is split until even a slow speaker ends it under the hard token cap; no word is cut or lost."""
    assert MAX_SEGMENT_PHONEMES * SLOW_TOKENS_PER_PHONEME <= HARD_TOKEN_CAP
    assert token_cap(MAX_SEGMENT_PHONEMES) >= SLOW_TOKENS_PER_PHONEME * MAX_SEGMENT_PHONEMES
    g2p = StandInG2P(per_char=5)
    text = "1234567 " * 60  # 120-unit segments of 15 digits: 526 phonemes each at 5 per digit
    planned = plan(monkeypatch, g2p, text)
    counts = [phonemes.count for phonemes in planned.phonemes if phonemes is not None]
    assert max(counts) <= MAX_SEGMENT_PHONEMES, counts
    assert " ".join(planned.segments).split() == text.split()  # every word, whole, in order
    assert len(g2p.calls) < 2 * len(planned.segments)  # each segment's G2P is kept, a split one re-read once


def test_g2p_results_are_reused_by_synthesis(monkeypatch: pytest.MonkeyPatch) -> None:
    """plan_speech reads every segment once; the plan carries them all, so SpeechRun calls no G2P of its own."""
    g2p = StandInG2P(per_char=2)
    text = "今日は晴れ。明日は雨。明後日は雪。"
    planned = plan(monkeypatch, g2p, text)
    assert len(g2p.calls) == len(planned.segments) == 3
    assert all(phonemes is not None for phonemes in planned.phonemes)
    decoding = speech._SegmentDecoding(planned, 1, "test", 0)
    with pytest.raises(Exception):  # noqa: B017  (no voice to decode with: only the G2P side is checked)
        decoding.step(8, None, None)  # type: ignore[arg-type]
    assert decoding.phonemes is planned.phonemes[1] and len(g2p.calls) == 3


def test_a_g2p_error_refuses_the_request_before_any_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    """facf13a skipped the segment (its words never spoken) and ended the stream as complete (outcome=ok)."""
    with pytest.raises(speech.UnreadableText) as refused:
        plan(monkeypatch, StandInG2P(per_char=2, fails_on="嗯"), "今日は晴れ。嗯、そうですね。明日は雨。")
    error = as_api_error(refused.value)
    assert error is not None and (error.status, error.code, error.param) == (400, "unreadable_input", "input")
    assert "嗯" in error.message
    assert orjson.loads(error.body())["error"]["type"] == "invalid_request_error"


def test_the_first_segments_g2p_runs_as_a_scheduler_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the worker limit like every model call, as the endpoint runs it: facf13a ran it in a bare thread."""
    scheduler = Scheduler(workers=1, extra_places=0)
    busy: list[int] = []

    class Watched(StandInG2P):
        def __call__(self, text: str, language: str, forced: str | None = None) -> Phonemes:
            busy.append(scheduler.slots.jobs_running)
            return super().__call__(text, language, forced)

    ticket = admitted(scheduler)
    planned = plan(monkeypatch, Watched(per_char=2), "こんにちは。", run=partial(scheduler.run, ticket))
    assert busy == [1] and scheduler.slots.jobs_finished == 1  # the one worker was taken while G2P ran
    assert planned.first_phonemes.count == 11


def test_the_audio_limit_is_at_the_models_own_pace_whatever_the_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint hands plan_speech MAX_AUDIO_SECONDS itself at every speed: facf13a multiplied it by `speed`,
    so speed 4 bought four times the synthesis."""
    from api.rate_limit import RateLimiter
    from api.request import Request
    from api.speech import SpeechEndpoint
    from api.voices import VoiceChoice
    from settings import Settings

    seen: list[float | None] = []

    async def planning(voice, text, *args, max_seconds=None, **options):  # noqa: ANN001, ANN202
        seen.append(max_seconds)
        raise speech.NothingToSay("stop here")

    monkeypatch.setattr("api.speech.plan_speech", planning)
    settings = Settings.from_env({})
    voices = SimpleNamespace(choose=lambda model, voice: VoiceChoice(SimpleNamespace(name="demo"), None))  # type: ignore[arg-type]
    scheduler = Scheduler(workers=1, extra_places=0)
    endpoint = SpeechEndpoint(settings, voices, scheduler, RateLimiter(0), None)  # type: ignore[arg-type]
    for speed in (0.25, 1, 4):
        body = orjson.dumps({"model": "demo", "input": "こんにちは。", "speed": speed})

        async def receive(body: bytes = body) -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/audio/speech",
            "headers": [(b"content-type", b"application/json")],
        }
        with pytest.raises(speech.NothingToSay):
            anyio.run(endpoint.create, Request(scope, receive, "127.0.0.1"))
    assert seen == [settings.max_audio_seconds] * 3
    assert scheduler.admission.requests_in_progress == 0  # each refused request gave its place back
