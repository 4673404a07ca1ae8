"""A request holds memory for the segments in flight only, and an error ending it leaves nothing referenced.

In process, on the demo voice: every `SegmentDecoder` (its KV cache is about 96 KB per position on a real voice)
is watched through a weak reference. Before issue 23, `speak` kept every segment's decoder until the request
ended, and the error that ended one kept them all through its traceback.
"""

from __future__ import annotations

import gc
import traceback
import weakref

import anyio
import numpy as np
import pytest

from tests.helpers import LONG, admitted

pytestmark = pytest.mark.e2e

#: Small segments, so the text makes many of them.
FIRST_BUDGET, BUDGET = 24, 40


class WatchedDecoders:
    """Replaces engine.synthesis.speech.SegmentDecoder with a subclass whose instances are watched by weak references."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from engine.synthesis import speech

        self.made: list[weakref.ref] = []
        watched = self.made

        class Watched(speech.SegmentDecoder):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                watched.append(weakref.ref(self))

        monkeypatch.setattr(speech, "SegmentDecoder", Watched)

    def alive(self) -> int:
        gc.collect()  # a circle of references is a leak too, but only one the collector would end; count it as freed
        return sum(ref() is not None for ref in self.made)


class FailingSession:
    """A session that fails from its `fail_from`-th run (either way of running it)."""

    def __init__(self, real, fail_from: int) -> None:
        self.real, self.fail_from, self.calls = real, fail_from, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def _count(self) -> None:
        self.calls += 1
        if self.calls >= self.fail_from:
            raise RuntimeError("injected failure")

    def run(self, outputs, feed):
        self._count()
        return self.real.run(outputs, feed)

    def run_with_iobinding(self, binding) -> None:
        self._count()
        self.real.run_with_iobinding(binding)


def speak_text(voice, text: str, deliver) -> None:
    from engine.synthesis import speech
    from engine.synthesis.scheduler import Scheduler

    async def run() -> None:
        plan = await speech.plan_speech(voice, text, FIRST_BUDGET, BUDGET, "memory-test", first_chunk_tokens=8)
        assert len(plan.segments) >= 6
        scheduler = Scheduler(workers=2, extra_places=0)
        ticket = admitted(scheduler)
        try:
            await speech.SpeechRun(plan, scheduler, ticket, speech.SpeechReport(), "memory-test", deliver).run()
        finally:
            scheduler.release(ticket)

    anyio.run(run)


def test_only_the_segments_in_flight_hold_a_decoder(demo_voice, monkeypatch: pytest.MonkeyPatch) -> None:
    """While later segments still decode, the decoders of the segments already vocoded are gone."""
    decoders = WatchedDecoders(monkeypatch)
    alive_at_delivery: list[int] = []

    async def deliver(audio: np.ndarray) -> None:
        alive_at_delivery.append(decoders.alive())

    speak_text(demo_voice, LONG, deliver)
    assert len(decoders.made) >= 6
    # The segment being vocoded and the one decoding ahead of it at most (today a decoder is released as soon as
    # its segment is decoded); before, every segment's decoder stayed until the request ended.
    assert max(alive_at_delivery) <= 2, alive_at_delivery
    assert decoders.alive() == 0


@pytest.mark.parametrize("stage", ["vocoder", "stage_decoder"])
def test_an_error_ending_a_request_leaves_nothing_referenced(demo_voice, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    """The caller keeps the error (to log it), as api/speech.py does while it logs: no decoder stays with it."""
    import dataclasses

    decoders = WatchedDecoders(monkeypatch)
    fail_from = {"vocoder": 8, "stage_decoder": 120}[stage]  # after a few segments: several decoders made
    failing = FailingSession(getattr(demo_voice, stage), fail_from)
    voice = dataclasses.replace(demo_voice, **{stage: failing})
    delivered = []

    async def deliver(audio: np.ndarray) -> None:
        delivered.append(audio.size)

    with pytest.raises(RuntimeError, match="injected failure") as raised:
        speak_text(voice, LONG, deliver)
    kept = raised.value
    assert delivered and len(decoders.made) >= 2, (len(delivered), len(decoders.made))
    assert decoders.alive() == 0
    # The traceback still says where it failed, for the log.
    assert "injected failure" in "".join(traceback.format_exception(kept))
    assert "_count" in "".join(traceback.format_tb(kept.__traceback__))
