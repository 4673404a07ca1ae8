"""The engine in the test process: one segment through both stages, as the server would run it in two jobs."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.decoding import Cancelled
from engine.g2p import Phonemes
from engine.synthesis import text_to_tokens, vocode
from engine.voice import Reference, Voice


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
