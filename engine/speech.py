"""One request's speech: segment and check the text up front, then synthesise segment by segment."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio.to_thread
import numpy as np

from engine.scheduler import Scheduler, Ticket
from engine.segmenter import segment
from engine.synthesis import SAMPLE_RATE, Phonemes, SegmentResult, synthesize, text_to_phonemes
from engine.voice import Voice

logger = logging.getLogger("gsv.speech")


class NothingToSay(ValueError):
    """No segment of the text has anything pronounceable in the voice's language."""


@dataclass
class SpeechPlan:
    voice: Voice
    segments: list[str]
    first_index: int  # segments before it had nothing to say
    first_phonemes: Phonemes


@dataclass
class SpeechReport:
    """What happened to one request, for its log line."""

    segments_done: int = 0
    segments_skipped: int = 0
    tokens: int = 0
    capped: int = 0
    audio_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _phonemes_or_none(text: str, language: str, request_id: str) -> Phonemes | None:
    try:
        phonemes = text_to_phonemes(text, language)
    except Exception as error:  # Genie's G2P raises IndexError, KeyError... on odd input; skip the segment
        logger.warning("request_id=%s segment_skipped=g2p_error error=%r text=%r", request_id, error, text[:80])
        return None
    return phonemes if phonemes.speakable else None


async def plan_speech(voice: Voice, text: str, first_budget: int, budget: int, request_id: str) -> SpeechPlan:
    """Segment the text and run G2P until a speakable segment is found, before any byte is sent."""
    segments = segment(text, first_budget, budget)
    for index, piece in enumerate(segments):
        phonemes = await anyio.to_thread.run_sync(_phonemes_or_none, piece, voice.language, request_id)
        if phonemes is not None:
            return SpeechPlan(voice, segments, index, phonemes)
    raise NothingToSay(f"the input has nothing pronounceable in {voice.language}")


def _synthesize_segment(voice: Voice, text: str, phonemes: Phonemes | None, ticket: Ticket, request_id: str) -> SegmentResult | None:
    if phonemes is None:
        phonemes = _phonemes_or_none(text, voice.language, request_id)
        if phonemes is None:
            return None
    return synthesize(voice, phonemes, ticket.cancel)


async def stream_speech(
    plan: SpeechPlan, scheduler: Scheduler, ticket: Ticket, report: SpeechReport, request_id: str
) -> AsyncIterator[np.ndarray]:
    """Yield each segment's float audio (32 kHz) as soon as it is synthesised."""
    report.segments_skipped = plan.first_index
    for index in range(plan.first_index, len(plan.segments)):
        phonemes = plan.first_phonemes if index == plan.first_index else None
        result = await scheduler.run(
            ticket, _synthesize_segment, plan.voice, plan.segments[index], phonemes, ticket, request_id
        )
        if result is None:
            report.segments_skipped += 1
            continue
        report.segments_done += 1
        report.tokens += result.tokens
        report.capped += int(result.capped)
        report.audio_seconds += result.audio.size / SAMPLE_RATE
        if result.capped:
            logger.warning("request_id=%s segment=%d token_cap_reached tokens=%d", request_id, index, result.tokens)
        if result.audio.size:
            yield result.audio
