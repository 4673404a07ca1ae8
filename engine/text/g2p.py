"""Text to phonemes (G2P), for the reference transcripts and for every segment of a request.

A segment is cut into runs of one language each (engine/text/script_runs.py); each run is normalised
(engine/text/normalisation.py) and read by its own language's G2P: Japanese, Chinese and English through Genie,
Korean through engine/text/korean_g2p.py. The runs' phonemes are joined into one sequence, as upstream GPT-SoVITS
joins them, and so are their BERT features: Genie's for Chinese runs (RoBERTa when GenieData has it, else
zeros), zeros for the others.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from engine import genie
from engine.text.korean_g2p import korean_to_symbols
from engine.text.languages import CODES, NAMES
from engine.text.normalisation import normalise
from engine.text.script_runs import Run, script_runs

# pyopenjtalk, jieba and g2pM keep global state that is not documented as thread-safe.
_G2P_LOCK = threading.Lock()
BERT_DIM = 1024
#: Put before every segment: it keeps the model from swallowing the first word. G2P reads it as one phoneme,
#: '.', in every language: a pause of the server's making, not part of the text (engine/synthesis/audio_budget.py).
SEGMENT_PREFIX = "。"
SEGMENT_PREFIX_PHONEMES = 1


@dataclass(frozen=True)
class Phonemes:
    sequence: np.ndarray  # int64 [1, n]
    bert: np.ndarray  # float32 [n, 1024]
    symbols: tuple[str, ...]
    languages: dict[str, int] = field(default_factory=dict)  # phonemes per language code, in order of first use

    @property
    def count(self) -> int:
        return int(self.sequence.shape[1])

    @property
    def speakable(self) -> bool:
        """False when G2P found nothing but punctuation and prosody marks (e.g. emoji only)."""
        return any(any(char.isalpha() for char in symbol) for symbol in self.symbols)


@functools.lru_cache(maxsize=4)
def _symbol_ids(table: tuple[str, ...]) -> dict[str, int]:
    """Symbol -> its id in `table`, built once per table rather than per Korean run."""
    return {symbol: position for position, symbol in enumerate(table)}


def _run_phonemes(text: str, code: str, prefix: str, last: bool) -> tuple[np.ndarray, np.ndarray]:
    """Phoneme ids [n] and BERT features [n, 1024] of one run; `prefix` is the segment's, on its first run only."""
    if code == "ko":
        index = _symbol_ids(tuple(genie.symbol_table()))
        symbols = korean_to_symbols(normalise(text, code))
        if not last and symbols[-1:] == ["."] and text.rstrip()[-1:].isalnum():
            symbols.pop()  # the closing '.' Korean G2P gives a text ending on a letter would be a pause mid-sentence
        symbols = (["."] if prefix else []) + symbols  # '。' reads as '.' elsewhere too
        ids = np.array([index[symbol] for symbol in symbols if symbol in index], dtype=np.int64)
        return ids, np.zeros((ids.size, BERT_DIM), dtype=np.float32)
    sequence, bert = genie.phones_and_bert(prefix + normalise(text, code), NAMES[code])
    return sequence[0].astype(np.int64), bert.astype(np.float32)


def text_to_phonemes(text: str, language: str, prefix: str = SEGMENT_PREFIX, forced: str | None = None) -> Phonemes:
    """G2P of `text` for a voice of `language` (a code), each run in its own language, or all of it in `forced` (a
    code), after `prefix` (SEGMENT_PREFIX for a segment)."""
    for code in (language, forced):
        if code is not None and code not in CODES:
            raise ValueError(f"unknown language code {code!r}; the codes are {', '.join(CODES)}")
    runs = script_runs(text, language, forced) or [Run("", language)]
    ids: list[np.ndarray] = []
    berts: list[np.ndarray] = []
    counts: Counter[str] = Counter()
    with _G2P_LOCK:
        for position, run in enumerate(runs):
            last = position == len(runs) - 1
            run_ids, run_bert = _run_phonemes(run.text, run.language, prefix if position == 0 else "", last)
            ids.append(run_ids)
            berts.append(run_bert)
            counts[run.language] += int(run_ids.size)
    sequence = np.concatenate(ids)[None, :]
    symbols = genie.symbol_table()
    languages = {code: count for code, count in counts.items() if count}
    return Phonemes(sequence, np.concatenate(berts), tuple(symbols[int(i)] for i in sequence[0]), languages)
