"""Text to phonemes (G2P) as Genie does it, for the reference transcripts and for every segment of a request."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine import genie

# pyopenjtalk, jieba and g2pM keep global state that is not documented as thread-safe.
_G2P_LOCK = threading.Lock()


@dataclass(frozen=True)
class Phonemes:
    sequence: np.ndarray  # int64 [1, n]
    bert: np.ndarray  # float32 [n, 1024]
    symbols: tuple[str, ...]

    @property
    def count(self) -> int:
        return int(self.sequence.shape[1])

    @property
    def speakable(self) -> bool:
        """False when G2P found nothing but punctuation and prosody marks (e.g. emoji only)."""
        return any(any(char.isalpha() for char in symbol) for symbol in self.symbols)


def text_to_phonemes(text: str, language: str, prefix: str = "。") -> Phonemes:
    """G2P of `text` in `language` (Genie's name); the leading '。' keeps the model from swallowing the first word."""
    with _G2P_LOCK:
        sequence, bert = genie.phones_and_bert(prefix + text, language)
    symbols = genie.symbol_table()
    return Phonemes(sequence, bert, tuple(symbols[int(i)] for i in sequence[0]))
