"""One request's speech: segment and check the text up front, then synthesise segment by segment."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread
import numpy as np

from engine.audio_budget import TooMuchAudio, fast_speech_seconds, token_budget
from engine.g2p import Phonemes, text_to_phonemes
from engine.scheduler import Scheduler, Ticket
from engine.segmenter import segment
from engine.synthesis import HARD_TOKEN_CAP, Tokens, text_to_tokens, vocode
from engine.voice import Reference, Voice

logger = logging.getLogger("gsv.speech")


class NothingToSay(ValueError):
    """No segment of the text has anything pronounceable in the voice's language."""


@dataclass
class SpeechPlan:
    voice: Voice
    segments: list[str]
    first_index: int  # segments before it had nothing to say
    first_phonemes: Phonemes
    reference: Reference  # the voice's default clip or one of its styles
    token_budget: int | None  # semantic tokens the whole request may decode (its audio limit); None: no limit


@dataclass
class SpeechReport:
    """What happened to one request, for its log line."""

    segments_done: int = 0
    segments_skipped: int = 0
    phonemes: int = 0  # the SSE `usage`: phonemes in...
    tokens: int = 0  # ...and semantic tokens out


def _phonemes_or_none(text: str, language: str, request_id: str) -> Phonemes | None:
    try:
        phonemes = text_to_phonemes(text, language)
    except Exception as error:  # Genie's G2P raises IndexError, KeyError... on odd input; skip the segment
        logger.warning("request_id=%s segment_skipped=g2p_error error=%r text=%r", request_id, error, text[:80])
        return None
    return phonemes if phonemes.speakable else None


async def plan_speech(
    voice: Voice,
    text: str,
    first_budget: int,
    budget: int,
    request_id: str,
    style: str | None = None,
    max_seconds: float | None = None,
) -> SpeechPlan:
    """Check the text's likely length, segment it and run G2P until a speakable segment is found, before any
    byte is sent. `max_seconds` is the request's audio limit at the model's own pace (speed 1)."""
    tokens_allowed = None
    if max_seconds is not None:
        likely_seconds = fast_speech_seconds(text)
        if likely_seconds > max_seconds:
            raise TooMuchAudio(likely_seconds, max_seconds)
        tokens_allowed = token_budget(max_seconds)
    segments = segment(text, first_budget, budget)
    for index, piece in enumerate(segments):
        phonemes = await anyio.to_thread.run_sync(_phonemes_or_none, piece, voice.language, request_id)
        if phonemes is not None:
            return SpeechPlan(voice, segments, index, phonemes, voice.reference_for(style), tokens_allowed)
    raise NothingToSay(f"the input has nothing pronounceable in {voice.language}")


def _tokens_for_segment(plan: SpeechPlan, index: int, ticket: Ticket, request_id: str, budget: int) -> Tokens | None:
    """Stage one in a worker: G2P (unless planned already) and the T2S decoding loop; None to skip the segment."""
    phonemes = (
        plan.first_phonemes
        if index == plan.first_index
        else _phonemes_or_none(plan.segments[index], plan.voice.language, request_id)
    )
    if phonemes is None:
        return None
    return text_to_tokens(plan.voice, phonemes, plan.reference, ticket.cancel, budget)


async def speak(
    plan: SpeechPlan,
    scheduler: Scheduler,
    ticket: Ticket,
    report: SpeechReport,
    request_id: str,
    deliver: Callable[[np.ndarray], Awaitable[None]],
) -> None:
    """Synthesise every segment and `deliver` its float audio (32 kHz), in order, as soon as it is ready.

    Two stages, pipelined: the T2S loop of segment k+1 runs while the vocoder turns segment k into audio
    (from the second segment on: the first one has the cores to itself, for the earliest first audio).
    The T2S loop barely uses a second core and the vocoder does, so the overlap makes one long request
    about 10% faster on 2 cores (bench/). Each stage is one scheduler job, so other requests still get
    their turn between them; at most one segment's tokens wait for the vocoder (the stream's buffer).
    """
    send, receive = anyio.create_memory_object_stream[tuple[int, Tokens]](1)
    first_audio_out = anyio.Event()
    report.segments_skipped = plan.first_index
    failures: list[Exception] = []  # raised after the task group, so callers see the error itself, not a group

    async def decode_all() -> None:
        decoded = 0
        try:
            async with send:
                for index in range(plan.first_index, len(plan.segments)):
                    left = HARD_TOKEN_CAP if plan.token_budget is None else plan.token_budget - decoded
                    tokens = await scheduler.run(ticket, _tokens_for_segment, plan, index, ticket, request_id, left)
                    if tokens is None:
                        report.segments_skipped += 1
                        continue
                    if tokens.capped:
                        logger.warning(
                            "request_id=%s segment=%d token_cap_reached tokens=%d", request_id, index, tokens.values.size
                        )
                    decoded += int(tokens.values.size)
                    await send.send((index, tokens))
                    # The first segment's vocoder gets both cores: decoding the next one beside it would
                    # delay the first audio, which is what the listener waits for.
                    await first_audio_out.wait()
        except Exception as error:  # ends the stream; the vocoder side re-raises it
            failures.append(error)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(decode_all)
        try:
            async with receive:
                async for _, tokens in receive:
                    audio = await scheduler.run(ticket, vocode, plan.voice, tokens)
                    report.segments_done += 1
                    report.phonemes += tokens.phonemes.count
                    report.tokens += int(tokens.values.size)
                    if audio.size:
                        await deliver(audio)
                    ticket.streaming = True
                    first_audio_out.set()
        except Exception as error:
            failures.append(error)
            ticket.cancel.set()  # stop the decoding side within one step
            tasks.cancel_scope.cancel()
    if failures:
        raise failures[0]
