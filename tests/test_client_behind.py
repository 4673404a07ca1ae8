"""In process, on the demo voice: no synthesis runs ahead of a client that has not read the audio already sent.

While a send waits for the client (api/speech.py marks the ticket `client_behind`), the listener has the socket
buffers' worth of audio in hand, and a slow reader must not turn the server's work ahead of it into waits for
everyone else (bench/results/reliability.md, the slow-reader attacks).
"""

from __future__ import annotations

import time

import anyio
import numpy as np
import pytest

from tests.helpers import LONG, admitted

pytestmark = pytest.mark.e2e

BLOCKED_S = 2.0


def test_the_decoding_waits_while_the_client_has_not_read(demo_voice, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.synthesis import speech
    from engine.synthesis.scheduler import Scheduler

    steps: list[float] = []  # when each decoding job began
    step = speech._SegmentDecoding.step

    def watched_step(self, *args):
        steps.append(time.monotonic())
        return step(self, *args)

    monkeypatch.setattr(speech._SegmentDecoding, "step", watched_step)
    scheduler = Scheduler(workers=2, extra_places=0)
    ticket = admitted(scheduler)
    blocked: list[tuple[float, float]] = []
    deliveries = 0

    async def deliver(audio: np.ndarray) -> None:
        nonlocal deliveries
        deliveries += 1
        if deliveries == 4:  # as a send that waits for a client which stopped reading for a while
            ticket.client_behind = True
            began = time.monotonic()
            await anyio.sleep(BLOCKED_S)
            ticket.client_behind = False
            blocked.append((began, time.monotonic()))

    async def run() -> None:
        plan = await speech.plan_speech(demo_voice, LONG, 24, 300, "client-behind", first_chunk_tokens=8)
        assert len(plan.segments) >= 2  # a short first segment, then long ones: decoding ahead has work
        try:
            await speech.SpeechRun(plan, scheduler, ticket, speech.SpeechReport(), "client-behind", deliver).run()
        finally:
            scheduler.release(ticket)

    anyio.run(run)
    assert blocked, "the text made fewer than two deliveries"
    began, ended = blocked[0]
    during = [at for at in steps if began < at < ended]
    # A job already waiting for a worker when the send began may still start; none is asked for after it.
    # Decoding ahead regardless (as before), six jobs began here while the client had not read.
    assert len(during) <= 1, f"{len(during)} decoding jobs began while the client had not read"
    assert any(at > ended for at in steps)  # and the decoding went on once the client read again
