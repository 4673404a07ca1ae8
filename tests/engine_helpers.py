"""The engine in the test process: one segment through both stages, as the server would run it in two jobs."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.synthesis.decoding import Cancelled, SegmentDecoder
from engine.synthesis.vocoding import token_cap, vocode_values
from engine.text.g2p import Phonemes
from engine.voices.voice import Reference, Voice


@dataclass(frozen=True)
class Tokens:
    """A segment's semantic tokens, decoded whole, and what the vocoder needs with them."""

    phonemes: Phonemes
    values: np.ndarray  # int64 [n], EOS removed, possibly empty
    capped: bool
    reference: Reference  # the vocoder must use the clip the tokens were decoded with


def text_to_tokens(voice: Voice, phonemes: Phonemes, reference: Reference, cancel: threading.Event) -> Tokens:
    """The whole decoding of one segment in one call (the server splits it into jobs), stopping at its cap."""
    cap = token_cap(phonemes.count)
    decoder = SegmentDecoder(voice, phonemes, reference, cap)
    values = decoder.advance(cap, cancel)
    return Tokens(phonemes, values, not decoder.stopped, reference)


def vocode(voice: Voice, tokens: Tokens) -> np.ndarray:
    """The whole segment through the vocoder at once (no chunking)."""
    return vocode_values(voice, tokens.phonemes, tokens.reference, tokens.values)


@dataclass(frozen=True)
class SegmentResult:
    audio: np.ndarray  # float32 mono at the model's rate, possibly empty
    tokens: int
    capped: bool


def synthesize(voice: Voice, phonemes: Phonemes, cancel: threading.Event, reference: Reference | None = None) -> SegmentResult:
    tokens = text_to_tokens(voice, phonemes, reference or voice.reference, cancel)
    if cancel.is_set():
        raise Cancelled
    return SegmentResult(vocode(voice, tokens), int(tokens.values.size), tokens.capped)
