"""A bound on one request's audio, so that no single request can hold a synthesis slot for an hour.

Checked twice: before any byte is sent, against the shortest duration the text's phonemes could plausibly take
(so a request is refused up front only when even fast speech would pass the limit), and during synthesis,
exactly, on the semantic tokens decoded (25 per second of audio), which is what costs CPU time. Both count
audio at the model's own pace (speed 1): the listener's `speed` stretches the audio afterwards, so it buys no
more synthesis.
"""

from __future__ import annotations

import math

from engine.models.rates import TOKENS_PER_SECOND

#: Semantic tokens per phoneme of the text (as G2P counts them, its pauses included; not the pause the server
#: puts before each segment) of fast speech: the fast end of trained voices (2-3 per phoneme,
#: engine/synthesis/vocoding.py). The demo voices measure 2 per phoneme of text plus 3 per segment (the length rule of
#: engine/tools/demo.py): `"999999999999999 " * 256` is 15,360 phonemes of text for the Japanese demo voice,
#: 1,229 s of audio by this estimate and about 1,234 s made (20 minutes on 2 cores); 29,440 for the English one.
#: Counted in characters, the estimate was 160 s. Trained voices are rarely faster at speed 1, so a text is
#: refused only when it is sure to pass the limit, or within a few percent of it.
FAST_TOKENS_PER_PHONEME = 2
SECONDS_PER_PHONEME = FAST_TOKENS_PER_PHONEME / TOKENS_PER_SECOND


class TooMuchAudio(ValueError):
    """Even spoken fast, the text would make more audio than the request may."""

    def __init__(self, likely_seconds: float, max_seconds: float) -> None:
        super().__init__(f"the input would make at least {likely_seconds:.0f} s of audio, more than {max_seconds:.0f} s")
        self.likely_seconds, self.max_seconds = likely_seconds, max_seconds


class AudioLimitReached(Exception):
    """Synthesis reached the request's audio limit before the text was spoken: the rest is not sent."""


def fast_speech_seconds(phoneme_count: int) -> float:
    """Seconds of audio `phoneme_count` phonemes take at least, at speed 1 (the model's own pace), spoken fast."""
    return SECONDS_PER_PHONEME * phoneme_count


def token_budget(max_seconds: float) -> int:
    return math.floor(max_seconds * TOKENS_PER_SECOND)
