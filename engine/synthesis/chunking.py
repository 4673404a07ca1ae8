"""Chunked vocoding: a segment's audio in pieces, the first as soon as a few tokens exist, none of them late.

The vocoder (VITS) is not purely convolutional: its encoder attends over the whole token sequence, and
each output sample depends on neighbouring tokens on both sides. So a chunk re-vocodes `CONTEXT_TOKENS` before
it (their audio is dropped), and holds back its last `LOOKAHEAD_TOKENS`, vocoded without their right-hand
neighbours, for the next chunk to vocode again; the two versions of the first `CROSSFADE_SAMPLES` after a seam
are crossfaded, so the VITS noise (random per run) changes without a click. On the demo voice with the noise
made deterministic, chunked output then equals whole-segment output (tests/test_chunked_vocoding.py).

`chunk_size` is the plan: how many decoded tokens to vocode now. The first chunk of a request is
`first_chunk_tokens`; later ones are as large as can be ready before the listener runs out of audio, at the
speed measured at run time (engine/synthesis/speed.py), so they grow as audio builds up ahead of the listener.
A segment whose tokens are all decoded is vocoded at once (unless that would make the listener wait), and
the last piece of a segment is never held back waiting for a chunk size.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from engine.models.rates import SAMPLES_PER_TOKEN, TOKEN_SECONDS
from engine.synthesis.speed import SynthesisSpeed

CONTEXT_TOKENS = 2
LOOKAHEAD_TOKENS = 1
CROSSFADE_SAMPLES = 320  # 10 ms, inside the held-back tokens
MIN_CHUNK_TOKENS = 8
MAX_CHUNK_TOKENS = 40  # 1.6 s: about a second to vocode on 2 cores, so no wait between bytes grows longer
#: Plan to use this share of the audio buffered ahead of the listener, less a fixed margin, for the next chunk.
BUFFER_SHARE = 0.9
MARGIN_S = 0.05
#: On a machine slower than real time, chunks as large as take this long to decode and vocode, other requests'
#: turns included: the longest wait between audio bytes (voice agents end a turn after a few silent seconds).
OVERLOAD_GAP_S = 0.8
#: However much audio is buffered, no chunk takes longer than this to decode and vocode: the bytes keep flowing
#: (voice-agent clients end a turn after a few seconds without audio, whatever they have buffered).
MAX_CHUNK_WAIT_S = 0.6


def chunk_size(
    pending: int,
    finished: bool,
    buffered_s: float | None,
    speed: SynthesisSpeed,
    first_chunk_tokens: int,
    load: float = 1.0,
) -> int:
    """How many of the `pending` tokens (decoded, not yet vocoded) to vocode now; 0 to wait for more.

    `finished`: the segment has no more tokens to come. `buffered_s`: listener seconds sent and not yet played,
    None before the request's first audio. `first_chunk_tokens` 0 turns chunking off (whole segments).
    `load`: admitted requests per worker. Above 1, each job of this request waits for others' turns; one request
    alone (0.5 on 2 workers) decodes one chunk while it vocodes the one before.
    """
    if pending <= 0:
        return 0
    if finished and (buffered_s is None or first_chunk_tokens <= 0):
        return pending
    if first_chunk_tokens <= 0:
        return 0
    if buffered_s is None:  # the first chunk: FIRST_CHUNK_TOKENS whatever the speed, the first audio comes first
        return first_chunk_tokens if pending >= first_chunk_tokens else 0
    size = max(fitting_chunk(pending, buffered_s, speed, load), growing_chunk(speed, load, pending))
    if finished:
        # At once when it is ready in time; otherwise what fits now, and the rest at once next.
        return pending if pending <= max(size, MIN_CHUNK_TOKENS) else size
    return size if pending >= size else 0


def chunk_cost_s(size: int, speed: SynthesisSpeed) -> float:
    return speed.vocode_s(size + CONTEXT_TOKENS)


def chunk_turn_s(size: int, speed: SynthesisSpeed) -> float:
    """Decoding and vocoding one chunk, one after the other."""
    return size * speed.decode_s_per_token + chunk_cost_s(size, speed)


def growing_chunk(speed: SynthesisSpeed, load: float = 1.0, pending: int = 0) -> int:
    """The smallest chunk whose audio lasts a quarter longer than it takes to vocode (other requests' turns
    included): smaller ones would let the buffer ahead of the listener shrink however they are timed."""
    for size in range(MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS, 2):
        if (size - LOOKAHEAD_TOKENS) * TOKEN_SECONDS >= 1.25 * max(1.0, load) * chunk_cost_s(size, speed):
            return size
    # Slower than real time (an overloaded machine, or one shared by several streams): the listener waits
    # whatever the plan, so keep each wait short, as clients that give up after a few seconds without audio need.
    size = MIN_CHUNK_TOKENS
    while size < MAX_CHUNK_TOKENS and overload_wait_s(size + 2, pending, speed, load) <= OVERLOAD_GAP_S:
        size += 2
    return size


def overload_wait_s(size: int, pending: int, speed: SynthesisSpeed, load: float) -> float:
    """How long the listener waits for a chunk of `size` when `pending` tokens are decoded already. A request
    alone decodes while the chunk before is vocoded, so only the tokens still missing count (all of them at a
    segment's start); with a request per worker or more, each chunk waits a turn of the others' chunks too."""
    if load >= 1.0:
        return load * chunk_turn_s(size, speed)
    return max(0, size - pending) * speed.decode_s_per_token + chunk_cost_s(size, speed)


def fitting_chunk(pending: int, buffered_s: float, speed: SynthesisSpeed, load: float = 1.0) -> int:
    """The largest chunk (at least MIN_CHUNK_TOKENS) whose audio would be out before the buffer runs dry,
    counting the decoding still needed for it, the context the vocoder re-runs and other requests' turns."""
    budget = min(buffered_s * BUFFER_SHARE - MARGIN_S, MAX_CHUNK_WAIT_S)
    size = MIN_CHUNK_TOKENS
    while size < MAX_CHUNK_TOKENS:
        bigger = min(MAX_CHUNK_TOKENS, size + 2)
        wait = max(0, bigger - pending) * speed.decode_s_per_token
        if max(1.0, load) * (wait + chunk_cost_s(bigger, speed)) > budget:
            break
        size = bigger
    return size


class SegmentAudio:
    """One segment's tokens as they are decoded, and its audio, vocoded chunk by chunk with overlapping seams."""

    def __init__(self, vocode: Callable[[np.ndarray], np.ndarray], speed: SynthesisSpeed | None = None) -> None:
        self._vocode = vocode  # tokens (int64 [n]) to float32 audio, SAMPLES_PER_TOKEN per token
        self._speed = speed
        self.tokens = np.zeros(0, dtype=np.int64)
        self.emitted = 0  # tokens whose audio is out (the crossfade tail aside)
        self.chunks = 0
        self._tail = np.zeros(0, dtype=np.float32)  # the last chunk's version of the samples after `emitted`

    @property
    def pending(self) -> int:
        return int(self.tokens.size) - self.emitted

    def add(self, tokens: np.ndarray) -> None:
        if tokens.size:
            self.tokens = np.concatenate([self.tokens, tokens.astype(np.int64)])

    def vocode(self, count: int, final: bool) -> np.ndarray:
        """The audio of the next `count` pending tokens; `final`: they end the segment, so nothing is held back."""
        end = self.emitted + count
        start = max(0, self.emitted - CONTEXT_TOKENS)
        began = time.perf_counter()
        audio = self._vocode(self.tokens[start:end])
        if self._speed is not None:
            self._speed.vocoded(end - start, time.perf_counter() - began)
        if audio.size != (end - start) * SAMPLES_PER_TOKEN:
            raise ValueError(f"the vocoder gave {audio.size} samples for {end - start} tokens")
        audio = audio[(self.emitted - start) * SAMPLES_PER_TOKEN :].copy()
        if self._tail.size:
            fade = np.linspace(0.0, 1.0, self._tail.size + 2, dtype=np.float32)[1:-1]
            audio[: self._tail.size] = self._tail * (1 - fade) + audio[: self._tail.size] * fade
        self.chunks += 1
        if final or count <= LOOKAHEAD_TOKENS:
            self.emitted, self._tail = end, np.zeros(0, dtype=np.float32)
            return audio
        keep = (count - LOOKAHEAD_TOKENS) * SAMPLES_PER_TOKEN
        self.emitted = end - LOOKAHEAD_TOKENS
        self._tail = audio[keep : keep + CROSSFADE_SAMPLES].copy()
        return audio[:keep]
