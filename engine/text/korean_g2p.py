"""Korean text to the Korean phoneme symbols of GPT-SoVITS v2 (`symbols_v2`), as its models were trained on.

The steps follow GPT-SoVITS v2's Korean front end: written forms to Hangul words (`engine/text/korean_normaliser.py`),
the standard pronunciation rules of g2pk2 (liaison, nasalisation, tensification, aspiration, lateralisation,
palatalisation; it finds word classes with mecab-ko), one fix-up, then each syllable split into its letters
(compound vowels into two: ㅘ -> ㅗㅏ), spaces as '空' and anything else unknown as '停'.

g2pk2 and mecab keep global state, so calls are serialised by `_LOCK` here (engine/text/g2p.py also holds its own lock
around every G2P call). Nothing is loaded at import: the first call imports g2pk2 and opens the mecab-ko
dictionary (tens of milliseconds), and never downloads anything (see `_load`).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Protocol

from engine.text.korean_normaliser import normalise

JAMO = frozenset("ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎㄲㄸㅃㅆㅉㅏㅓㅗㅜㅡㅣㅐㅔ")
SPACE = "空"
UNKNOWN = "停"
PUNCTUATION = frozenset("!?…,.-")
#: Every symbol `korean_to_symbols` can return; all are in Genie's `symbols_v2` (tests check it).
SYMBOLS = JAMO | PUNCTUATION | {SPACE, UNKNOWN}

_COMPOUND_VOWELS = str.maketrans(
    {
        "ㅘ": "ㅗㅏ",
        "ㅙ": "ㅗㅐ",
        "ㅚ": "ㅗㅣ",
        "ㅝ": "ㅜㅓ",
        "ㅞ": "ㅜㅔ",
        "ㅟ": "ㅜㅣ",
        "ㅢ": "ㅡㅣ",
        "ㅑ": "ㅣㅏ",
        "ㅒ": "ㅣㅐ",
        "ㅕ": "ㅣㅓ",
        "ㅖ": "ㅣㅔ",
        "ㅛ": "ㅣㅗ",
        "ㅠ": "ㅣㅜ",
    }
)
#: Punctuation written another way, to the symbol it is read as (full-width forms are folded to ASCII first).
_PUNCTUATION_ALIASES = {":": ",", ";": ",", "·": ",", "、": ",", "。": "."}
_ELLIPSIS = re.compile(r"\.{3,}")
_WHITESPACE = re.compile(r"\s+")
_UNKNOWN_RUN = re.compile(UNKNOWN + "+")

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_ONSET_NIEUN, _ONSET_RIEUL, _CODA_RIEUL = 2, 5, 8


class _Pronouncer(Protocol):
    def __call__(self, text: str) -> str: ...


_LOCK = threading.Lock()
_pronouncer: _Pronouncer | None = None


def korean_to_symbols(text: str) -> list[str]:
    """Korean `text` as `symbols_v2` names; a sequence with nothing to say holds only punctuation, or nothing.

    A sequence that ends on a letter gets a closing '.', as GPT-SoVITS does, so the model hears an end.
    """
    written = _keep_known(normalise(text))
    if not written.strip(" " + UNKNOWN):
        return [symbol for symbol in written if symbol in PUNCTUATION]
    with _LOCK:
        spoken = _load()(written)
    spoken = _keep_word_initial_nieun(written, spoken)
    symbols = _collapse_unknown([_symbol(char) for char in _split_letters(spoken)])
    if not any(symbol in JAMO for symbol in symbols):
        return [symbol for symbol in symbols if symbol in PUNCTUATION]
    if symbols[-1] in JAMO:
        symbols.append(".")
    return symbols


def _keep_known(text: str) -> str:
    """Only Hangul, one space between words and known punctuation reach g2pk2; any other run becomes one '停'.

    g2pk2 and mecab get nothing they could choke on (lone surrogates, control characters), and a run of emoji
    is one pause, not one per code point.
    """
    text = _ELLIPSIS.sub("…", text)
    text = "".join(_PUNCTUATION_ALIASES.get(char, char) for char in text)
    text = _WHITESPACE.sub(" ", text).strip()
    kept = "".join(char if _is_known(char) else UNKNOWN for char in text)
    return _UNKNOWN_RUN.sub(UNKNOWN, kept)


def _is_known(char: str) -> bool:
    code = ord(char)
    return (
        _HANGUL_FIRST <= code <= _HANGUL_LAST
        or 0x3131 <= code <= 0x3163  # Hangul compatibility letters (ㄱ..ㅣ): ㅋㅋ is read letter by letter
        or char == " "
        or char in PUNCTUATION
    )


def _load() -> _Pronouncer:
    """g2pk2 with mecab-ko, built once.

    Importing g2pk2 calls `nltk.download("cmudict")` when the CMU dictionary is absent, and its `G2p()` may run
    `pip install` and loads that dictionary for English words. Every Latin letter is Hangul before g2pk2 sees the
    text (korean_normaliser), so the dictionary is never needed: the download is refused during the import and
    the object is built without `G2p.__init__`, with an empty English dictionary.
    """
    global _pronouncer
    if _pronouncer is not None:
        return _pronouncer
    import nltk  # noqa: PLC0415  (deliberately late: loading is on first use)

    download = nltk.download
    nltk.download = _refuse_download  # a process-wide swap, safe because engine/text/g2p.py runs one G2P call at a time
    try:
        import g2pk2  # noqa: PLC0415
        from g2pk2.utils import get_rule_id2text, parse_table  # noqa: PLC0415
        from mecab import MeCab  # noqa: PLC0415
    except ImportError as error:
        raise RuntimeError(f"Korean G2P needs {error.name}: pip install -r requirements.txt") from error
    finally:
        nltk.download = download

    class Pronouncer(g2pk2.G2p):
        def __init__(self) -> None:  # G2p.__init__ is skipped on purpose: see _load
            self.use_konlpy = False
            self.mecab_path = None
            self.mecab = MeCab()
            self.table = parse_table()
            self.cmu: dict[str, list[list[str]]] = {}
            self.rule2text = get_rule_id2text()
            self.idioms_path = str(Path(g2pk2.__file__).parent / "idioms.txt")

    _pronouncer = Pronouncer()
    return _pronouncer


def _refuse_download(*args: object, **kwargs: object) -> bool:
    return False  # what nltk.download returns when it cannot fetch: g2pk2 goes on without the dictionary


def _keep_word_initial_nieun(written: str, spoken: str) -> str:
    """Undo g2pk2's lateralisation across a space: 책을 넘기다 is 채글 넘기다, not 채글 럼기다.

    g2pk2 applies ㄹ+ㄴ -> ㄹ+ㄹ between words too; GPT-SoVITS repairs it after 을/를 only. Here a word that
    starts with ㄴ as written keeps it whatever the word before, when g2pk2 kept the words as they were.
    """
    written_words, spoken_words = written.split(" "), spoken.split(" ")
    if len(written_words) != len(spoken_words):
        return spoken
    for index in range(1, len(spoken_words)):
        before, word = spoken_words[index - 1], spoken_words[index]
        if (
            before
            and word
            and _parts(before[-1])[2] == _CODA_RIEUL
            and _parts(word[0])[0] == _ONSET_RIEUL
            and written_words[index]
            and _parts(written_words[index][0])[0] == _ONSET_NIEUN
        ):
            onset, vowel, coda = _parts(word[0])
            spoken_words[index] = chr(_HANGUL_FIRST + (_ONSET_NIEUN * 21 + vowel) * 28 + coda) + word[1:]
    return " ".join(spoken_words)


def _parts(char: str) -> tuple[int, int, int]:
    """Onset, vowel and coda indices of a Hangul syllable; (-1, -1, -1) for anything else."""
    code = ord(char) - _HANGUL_FIRST
    if not 0 <= code <= _HANGUL_LAST - _HANGUL_FIRST:
        return -1, -1, -1
    return code // 588, code // 28 % 21, code % 28


def _split_letters(text: str) -> str:
    """Syllables to compatibility letters (국 -> ㄱㅜㄱ, with the silent ㅇ of 아 kept), compound vowels split."""
    from jamo import h2j, j2hcj  # noqa: PLC0415  (jamo is light, but belongs to the lazy part)

    return j2hcj(h2j(text)).translate(_COMPOUND_VOWELS)


def _collapse_unknown(symbols: list[str]) -> list[str]:
    return [symbol for index, symbol in enumerate(symbols) if not (symbol == UNKNOWN and symbols[index - 1 : index] == [UNKNOWN])]


def _symbol(char: str) -> str:
    if char in JAMO or char in PUNCTUATION or char == UNKNOWN:
        return char
    return SPACE if char == " " else UNKNOWN
