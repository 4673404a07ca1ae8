"""One request's speech: segment and check the text up front, then synthesise segment by segment."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from engine.allocator import release_freed_memory
from engine.models.rates import SAMPLE_RATE
from engine.synthesis.audio_budget import AudioLimitReached, TooMuchAudio, fast_speech_seconds, token_budget
from engine.synthesis.chunking import SegmentAudio, chunk_size
from engine.synthesis.decoding import SegmentDecoder
from engine.synthesis.scheduler import Scheduler, Ticket
from engine.synthesis.speed import SynthesisSpeed
from engine.synthesis.vocoding import HARD_TOKEN_CAP, MAX_SEGMENT_PHONEMES, TokenCapReached, token_cap, vocode_values
from engine.text.g2p import SEGMENT_PREFIX_PHONEMES, Phonemes, text_to_phonemes
from engine.text.languages import NAMES
from engine.text.segmenter import halves, segment
from engine.voices.voice import Reference, Voice

logger = logging.getLogger("gsv.speech")


class NothingToSay(ValueError):
    """No segment of the text has anything pronounceable in the voice's language."""


class UnreadableText(ValueError):
    """G2P failed on part of the text: refused before the 200, rather than spoken with that part left out."""

    def __init__(self, text: str, error: Exception) -> None:
        super().__init__(f"the server could not read part of the input: {text[:80]!r} ({type(error).__name__})")
        self.text = text


@dataclass
class SpeechPlan:
    voice: Voice
    segments: list[str]
    #: Each segment's, from G2P up front; None: it has nothing to say, or its audio is out (SpeechRun releases it).
    phonemes: list[Phonemes | None]
    first_index: int  # the first segment with something to say (segments before it are skipped)
    reference: Reference  # the voice's default clip or one of its styles
    token_budget: int | None  # semantic tokens the whole request may decode (its audio limit); None: no limit
    first_chunk_tokens: int = 0  # tokens of the request's first vocoder chunk; 0: whole segments (no chunking)
    speed: float = 1.0  # the listener's playback speed (the audio's duration is divided by it)
    language: str | None = None  # the request's forced language (a code); None: each run of script in its own

    @property
    def first_phonemes(self) -> Phonemes:
        phonemes = self.phonemes[self.first_index]
        assert phonemes is not None
        return phonemes


@dataclass
class SpeechReport:
    """What happened to one request, for its log line."""

    segments_done: int = 0
    segments_skipped: int = 0
    chunks: int = 0  # vocoder runs
    phonemes: int = 0  # the SSE `usage`: phonemes in...
    tokens: int = 0  # ...and semantic tokens out
    languages: Counter[str] = field(default_factory=Counter)  # phonemes in per language code


def has_letters(text: str) -> bool:
    """Whether the text has a letter or digit at all: without one G2P finds nothing to say, so it is not called
    (`". " * 2048` is 682 segments, each a G2P call under the global G2P lock otherwise)."""
    return any(char.isalnum() for char in text)


def _phonemes_or_none(text: str, language: str, request_id: str, forced: str | None = None) -> Phonemes | None:
    """One segment's phonemes; None when it has nothing to say; `UnreadableText` when G2P fails on it."""
    if not has_letters(text):
        return None
    try:
        phonemes = text_to_phonemes(text, language, forced=forced)
    except Exception as error:  # Genie's G2P raised IndexError, KeyError... on odd input: never skipped silently
        logger.warning("request_id=%s g2p_error error=%r text=%r", request_id, error, text[:80])
        raise UnreadableText(text, error) from error
    return phonemes if phonemes.speakable else None


def _bounded_phonemes(text: str, language: str, request_id: str, forced: str | None) -> list[tuple[str, Phonemes | None]]:
    """A segment as parts of at most MAX_SEGMENT_PHONEMES phonemes each (cut at word boundaries), with their
    phonemes: a dense segment (a run of digits, kanji with long readings) would otherwise reach its token cap."""
    phonemes = _phonemes_or_none(text, language, request_id, forced)
    if phonemes is None or phonemes.count <= MAX_SEGMENT_PHONEMES:
        return [(text, phonemes)]
    parts = halves(text)
    if len(parts) == 1:  # one character with that many phonemes: nothing real is that dense
        return [(text, phonemes)]
    return [bounded for part in parts for bounded in _bounded_phonemes(part, language, request_id, forced)]


async def plan_speech(
    voice: Voice,
    text: str,
    first_budget: int,
    budget: int,
    request_id: str,
    style: str | None = None,
    max_seconds: float | None = None,
    first_chunk_tokens: int = 0,
    speed: float = 1.0,
    language: str | None = None,
    run: Callable[..., Awaitable[Any]] | None = None,
) -> SpeechPlan:
    """Segment the text and run G2P on all of it, before any byte is sent: a text the limit refuses, or one G2P
    cannot read, is refused with an error rather than cut after the 200; synthesis reuses these phonemes.

    `max_seconds` is the request's audio limit at the model's own pace (speed 1). `language` (a code) forces one
    language on the whole text; None reads each run of script in its own (engine/text/script_runs.py). `run(work,
    *args)` runs each segment's G2P as a job: the server passes its scheduler's, so G2P is under the worker
    limit like every model call; None (in-process tests) runs it in a thread."""
    if not has_letters(text):  # the cheap check first: no G2P call per segment for text of marks only
        raise NothingToSay(f"the input has nothing pronounceable in {NAMES[language or voice.language]}")
    job = run or anyio.to_thread.run_sync
    segments: list[str] = []
    phonemes: list[Phonemes | None] = []
    for piece in segment(text, first_budget, budget):
        bounded: list[tuple[str, Phonemes | None]] = await job(_bounded_phonemes, piece, voice.language, request_id, language)
        segments += [part for part, _ in bounded]
        phonemes += [part_phonemes for _, part_phonemes in bounded]
    if all(part is None for part in phonemes):
        raise NothingToSay(f"the input has nothing pronounceable in {NAMES[language or voice.language]}")
    tokens_allowed = None
    if max_seconds is not None:
        spoken = sum(part.count - SEGMENT_PREFIX_PHONEMES for part in phonemes if part is not None)
        likely_seconds = fast_speech_seconds(spoken)
        if likely_seconds > max_seconds:
            raise TooMuchAudio(likely_seconds, max_seconds)
        tokens_allowed = token_budget(max_seconds)
    reference = voice.reference_for(style)
    first_index = next(index for index, part in enumerate(phonemes) if part is not None)
    return SpeechPlan(voice, segments, phonemes, first_index, reference, tokens_allowed, first_chunk_tokens, speed, language)


class _SegmentDecoding:
    """One segment's T2S side: its resumable decoding, job by job, on the phonemes planned up front."""

    def __init__(self, plan: SpeechPlan, index: int, request_id: str, budget: int) -> None:
        self.plan, self.index, self.request_id, self.budget = plan, index, request_id, budget
        self.phonemes: Phonemes | None = None
        self.decoder: SegmentDecoder | None = None
        self.skipped = False
        self.decoded_all = False  # set in the worker when the decoder has finished (and has been released)
        self.finished = False  # set by the event loop, after the job's tokens are in `tokens`
        self.cap_lowered = False
        self.tokens: list[np.ndarray] = []  # decoded so far, appended by the event loop after each job

    @property
    def decoded(self) -> int:
        return sum(int(values.size) for values in self.tokens)

    def step(self, count: int, cancel: threading.Event, speed: SynthesisSpeed) -> np.ndarray:
        """A scheduler job: decode at least `count` more tokens (fewer at the segment's end)."""
        began = time.perf_counter()
        if self.decoder is None:
            plan = self.plan
            self.phonemes = plan.phonemes[self.index]  # from plan_speech: G2P runs once per segment
            if self.phonemes is None:
                self.skipped = self.decoded_all = True
                return np.zeros(0, dtype=np.int64)
            cap = token_cap(self.phonemes.count)
            self.cap_lowered = self.budget < cap  # by the request's audio limit
            self.decoder = SegmentDecoder(plan.voice, self.phonemes, plan.reference, min(cap, self.budget))
        decoder = self.decoder
        values = decoder.advance(count, cancel)
        if decoder.finished and not decoder.stopped:  # cutting the segment short would send less than the text
            if self.cap_lowered:  # as if it were all of it: break the stream instead
                raise AudioLimitReached
            logger.warning("request_id=%s segment=%d token_cap_reached tokens=%d", self.request_id, self.index, decoder.generated)
            raise TokenCapReached
        if decoder.finished:  # its KV cache (about 96 KB per position) is not needed to vocode: released now
            self.decoder = None
            self.decoded_all = True
        speed.decoded(int(values.size), time.perf_counter() - began)
        return values

    def release(self) -> None:
        """Once its audio is out: nothing of the segment stays referenced (another segment may still decode)."""
        self.decoder, self.phonemes, self.tokens = None, None, []
        self.plan.phonemes[self.index] = None  # its BERT features are 4 KB per phoneme


#: Tokens per T2S job after the first chunk's: short jobs let the vocoder start a chunk as soon as it has enough,
#: and other requests get their turn between them.
DECODE_JOB_TOKENS = 8


class _Changes:
    """Wakes whoever waits on the other side (decoding, vocoding) when something moved on; a fresh event each time."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.wait()


class SpeechRun:
    """One request's synthesis in progress: every segment decoded and vocoded, its audio delivered in order.

    Two sides, pipelined: the decode side runs the T2S decoding in jobs of a few tokens, the vocode side the
    vocoder in chunks (engine/synthesis/chunking.py) planned so that each is out before the listener has played
    what came before. The decoding runs ahead of the vocoder by at most one segment. The T2S step barely uses a
    second core and the vocoder does, so the overlap shortens a long request on 2 cores. A text of one segment (a
    clause, the way chat clients send speech) is the exception for its first chunk: the decoding waits for the
    first audio, so the first vocoder run has both cores (first audio about 0.15 s sooner on 2). A longer text
    keeps decoding meanwhile: the audio after the first chunk would otherwise come late (the benchmark's sentence
    paused twice as long). Every job is one scheduler job, so other requests get their turn between them. While a
    send waits for the client (`ticket.client_behind`), the decoding waits too: that listener has audio in hand,
    and a client that reads slowly would otherwise keep a worker busy on audio it may never take.
    """

    def __init__(
        self,
        plan: SpeechPlan,
        scheduler: Scheduler,
        ticket: Ticket,
        report: SpeechReport,
        request_id: str,
        deliver: Callable[[np.ndarray], Awaitable[None]],
    ) -> None:
        self.plan, self.scheduler, self.ticket, self.report = plan, scheduler, ticket, report
        self.request_id, self.deliver = request_id, deliver
        self.in_flight: deque[_SegmentDecoding] = deque()  # decoding or being vocoded; released once its audio is out
        self.changes = _Changes()
        self.failures: list[Exception] = []  # raised after the task group: callers see the error itself, not a group
        # The decode side's:
        self.decoding_done = False
        self.tokens_decoded = 0  # by the whole request, against its token budget
        # The vocode side's:
        self.first_audio_at: float | None = None  # monotonic
        self.audio_out_s = 0.0  # listener seconds sent

    async def run(self) -> None:
        self.report.segments_skipped = self.plan.first_index
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._decode_all)
                try:
                    await self._vocode_all()
                except Exception as error:
                    self.failures.append(error)
                    self.ticket.cancel.set()  # stop the decode side within one step
                    tasks.cancel_scope.cancel()
        finally:
            for decoding in self.in_flight:  # what an error or a cancellation left
                decoding.release()
            self.in_flight.clear()
            release_freed_memory()
        if self.failures:
            _drop_locals(self.failures)  # the later ones too: a worker thread may still hold one for a moment
            del self.failures[1:]
            raise self.failures.pop()  # not kept in a local: this frame, in the traceback, would hold the error in a circle

    # The decode side.

    async def _decode_all(self) -> None:
        try:
            for index in range(self.plan.first_index, len(self.plan.segments)):
                await self.changes.until(lambda: len(self.in_flight) < 2)  # one segment ahead of the vocoder at most
                await self._decode_segment(index)
        except Exception as error:  # ends the stream; the vocode side re-raises it
            self.failures.append(error)
        finally:
            self.decoding_done = True
            self.changes.notify()

    async def _decode_segment(self, index: int) -> None:
        plan, ticket = self.plan, self.ticket
        left = HARD_TOKEN_CAP if plan.token_budget is None else plan.token_budget - self.tokens_decoded
        decoding = _SegmentDecoding(plan, index, self.request_id, left)
        self.in_flight.append(decoding)
        first = index == plan.first_index and plan.first_chunk_tokens > 0
        count = plan.first_chunk_tokens if first else DECODE_JOB_TOKENS
        hold = first and len(plan.segments) - plan.first_index == 1  # a one-segment text: its first audio goes first
        while not decoding.finished:
            await self.changes.until(lambda: not ticket.client_behind or bool(self.failures))
            values = await self.scheduler.run(ticket, decoding.step, count, ticket.cancel, self.scheduler.speed)
            # Set here, not in the worker: the vocode side must never see `finished` before the tokens.
            decoding.tokens.append(values)
            decoding.finished = decoding.decoded_all
            self.tokens_decoded += int(values.size)
            count = DECODE_JOB_TOKENS
            self.changes.notify()
            if hold:
                hold = False
                await self.changes.until(lambda: self.first_audio_at is not None or decoding.finished or bool(self.failures))

    # The vocode side.

    async def _vocode_all(self) -> None:
        while not self.failures:
            if not self.in_flight:
                if self.decoding_done:
                    break
                await self.changes.wait()
                continue
            decoding = self.in_flight[0]
            if decoding.phonemes is None and not decoding.finished:
                await self.changes.wait()  # its first job has not run yet
                continue
            if decoding.skipped:
                self.report.segments_skipped += 1
            else:
                await self._vocode_segment(decoding)
            self.in_flight.popleft().release()
            self.changes.notify()

    async def _vocode_segment(self, decoding: _SegmentDecoding) -> None:
        assert decoding.phonemes is not None
        plan, scheduler = self.plan, self.scheduler
        audio = SegmentAudio(partial(vocode_values, plan.voice, decoding.phonemes, plan.reference), scheduler.speed)
        taken = 0
        while True:
            for values in decoding.tokens[taken:]:
                audio.add(values)
            taken = len(decoding.tokens)
            finished = decoding.finished
            load = scheduler.admission.requests_in_progress / scheduler.slots.workers
            count = chunk_size(audio.pending, finished, self._buffered_s(), scheduler.speed, plan.first_chunk_tokens, load)
            if count == 0:
                if finished or self.failures:
                    break
                await self.changes.wait()
                continue
            final = finished and count == audio.pending
            samples = await scheduler.run(self.ticket, audio.vocode, count, final)
            if samples.size:
                await self._send(samples)
            self.ticket.streaming = True
            if final:
                break
        self._report_segment(decoding.phonemes, audio)

    async def _send(self, samples: np.ndarray) -> None:
        await self.deliver(samples)
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        self.changes.notify()  # the client has taken what was sent before (and the first audio is out): decode on
        self.audio_out_s += samples.size / SAMPLE_RATE / self.plan.speed
        self.ticket.audio_at, self.ticket.dry_at = time.monotonic(), self.first_audio_at + self.audio_out_s

    def _buffered_s(self) -> float | None:
        """Listener seconds sent and not yet played; None before the first audio."""
        return None if self.first_audio_at is None else self.audio_out_s - (time.monotonic() - self.first_audio_at)

    def _report_segment(self, phonemes: Phonemes, audio: SegmentAudio) -> None:
        report = self.report
        report.chunks += audio.chunks
        report.segments_done += 1
        report.phonemes += phonemes.count
        report.languages.update(phonemes.languages)
        report.tokens += int(audio.tokens.size)


def _drop_locals(errors: list[Exception]) -> None:
    """Clear the local variables of every frame in the tracebacks of `errors` and of the errors they chain: a
    caller that keeps one (to log it) must not keep a decoder's KV cache or a segment's audio alive with it. The
    tracebacks still print (their lines and code stay)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = list(errors)
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        pending += [error.__cause__, error.__context__]
