"""A segment's text as runs of one language each, decided by script.

Chat models mix scripts ("我用 iPhone 打电话", "今日は GitHub を見た"): each run goes to the G2P of its own
language, as upstream GPT-SoVITS reads the English words of its `zh` and `ja` modes with English G2P.
Hangul is Korean, kana Japanese, Latin letters English in any voice. Han is the voice's language when that
is Chinese or Japanese; in another voice it is Japanese when it touches kana (okurigana, particles) and
Chinese otherwise. Characters of no script (digits, spaces, punctuation, symbols) join a run around them: a
number with its sign, separators and unit ("3.5kg", "100%", "$20", "15:30") is one token that joins the run
it touches ("3月", "GPT-4o", "A4纸": the run before wins a tie), else the run before it ("iPhone 15"); the
rest joins the run before it, or the first run at the start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Units read with the number they follow (each language's normaliser names them in its own words).
UNITS = r"(?:kg|km|cm|mm|ml|mg|GB|MB|KB|TB|kHz|MHz|GHz|Hz|%|‰|℃|℉|°C|°F|°)"
#: A number as one token: sign or currency, digits with inner separators, an optional unit right after.
NUMBER = re.compile(rf"[-+−]?[$€£¥￥₩]?\d+(?:[.,:/\-]\d+)*(?:{UNITS}(?![A-Za-z]))?")


@dataclass(frozen=True)
class Run:
    text: str
    language: str  # a code (engine/text/languages.py)


def script_of(char: str) -> str | None:
    """'ko', 'ja', 'en', 'han', or None for a character of no script (digits, punctuation, symbols, spaces)."""
    point = ord(char)
    if 0xAC00 <= point <= 0xD7AF or 0x1100 <= point <= 0x11FF or 0x3130 <= point <= 0x318F or 0xA960 <= point <= 0xA97F:
        return "ko"
    if 0x3040 <= point <= 0x30FF or 0x31F0 <= point <= 0x31FF or 0xFF66 <= point <= 0xFF9F:
        return "ja"  # hiragana, katakana (with ー), small katakana, half-width katakana
    if (
        0x4E00 <= point <= 0x9FFF
        or 0x3400 <= point <= 0x4DBF
        or 0xF900 <= point <= 0xFAFF
        or 0x20000 <= point <= 0x3134F
        or char in "々〆"
    ):
        return "han"
    if char.isalpha() and (point < 0x250 or 0xFF21 <= point <= 0xFF5A or 0x1E00 <= point <= 0x1EFF):
        return "en"  # ASCII, Latin-1 and Latin Extended letters, full-width Latin
    return None


def _han_language(voice: str, touches_kana: bool) -> str:
    if voice in ("zh", "ja"):
        return voice
    return "ja" if touches_kana else "zh"


def _tag_scripts(text: str) -> list[str | None]:
    """Per character: its script, numbers marked '#' as whole tokens."""
    tags: list[str | None] = [script_of(char) for char in text]
    for match in NUMBER.finditer(text):  # a unit is never the start of a longer word: see NUMBER
        for i in range(match.start(), match.end()):
            tags[i] = "#"
    return tags


def _spans(tags: list[str | None]) -> list[tuple[int, int, str | None]]:
    spans: list[tuple[int, int, str | None]] = []
    start = 0
    for index in range(1, len(tags) + 1):
        if index == len(tags) or tags[index] != tags[start]:
            spans.append((start, index, tags[start]))
            start = index
    return spans


def script_runs(text: str, voice_language: str, forced: str | None = None) -> list[Run]:
    """`text` as runs of one language each, in order; their texts concatenated are `text` exactly.

    `voice_language` and `forced` are codes (engine/text/languages.py); `forced` makes the whole text one run.
    """
    if not text:
        return []
    if forced is not None:
        return [Run(text, forced)]
    spans = _spans(_tag_scripts(text))
    languages: list[str | None] = []
    for index, (_, _, tag) in enumerate(spans):
        if tag == "han":
            neighbours = [spans[j][2] for j in (index - 1, index + 1) if 0 <= j < len(spans)]
            languages.append(_han_language(voice_language, "ja" in neighbours))
        elif tag in ("ko", "ja", "en"):
            languages.append(tag)
        else:
            languages.append(None)
    for index, (_, _, tag) in enumerate(spans):
        if tag != "#":
            continue
        before = languages[index - 1] if index > 0 else None
        after = languages[index + 1] if index + 1 < len(spans) else None
        languages[index] = before or after  # touching: the run before wins a tie
        if languages[index] is None:
            languages[index] = _nearest(languages, index)
    runs: list[Run] = []
    for index, (start, end, _) in enumerate(spans):
        language = languages[index] or _nearest(languages, index) or voice_language
        if runs and runs[-1].language == language:
            runs[-1] = Run(runs[-1].text + text[start:end], language)
        else:
            runs.append(Run(text[start:end], language))
    return runs


def _nearest(languages: list[str | None], index: int) -> str | None:
    """The language of the run before `index`, else of the first run after it."""
    for j in range(index - 1, -1, -1):
        if languages[j] is not None:
            return languages[j]
    for j in range(index + 1, len(languages)):
        if languages[j] is not None:
            return languages[j]
    return None
