"""A bound on one request's audio, so that no single request can hold a synthesis slot for an hour.

Checked twice: before any byte is sent, against the shortest duration the text could plausibly take (so a
request is refused up front only when even fast speech would pass the limit), and during synthesis, exactly,
on the semantic tokens decoded (25 per second of audio), which is what costs CPU time.
"""

from __future__ import annotations

import math

from engine.segmenter import units

TOKENS_PER_SECOND = 25
#: Fast speech in Japanese, Chinese or English takes about 24 length units a second or fewer (a kana or a
#: hanzi is 2 units, a Latin letter or digit 1: the segmenter's measure), so 1/24 s per unit is a low estimate.
SECONDS_PER_UNIT = 1 / 24


class TooMuchAudio(ValueError):
    """Even spoken fast, the text would make more audio than the request may."""

    def __init__(self, likely_seconds: float, max_seconds: float) -> None:
        super().__init__(f"the input would make at least {likely_seconds:.0f} s of audio, more than {max_seconds:.0f} s")
        self.likely_seconds, self.max_seconds = likely_seconds, max_seconds


class AudioLimitReached(Exception):
    """Synthesis reached the request's audio limit before the text was spoken: the rest is not sent."""


def fast_speech_seconds(text: str) -> float:
    """Seconds of audio the text takes at least, at speed 1: its letters, digits and characters, spoken fast."""
    return SECONDS_PER_UNIT * units("".join(char for char in text if char.isalnum()))


def token_budget(max_seconds: float) -> int:
    return math.floor(max_seconds * TOKENS_PER_SECOND)
