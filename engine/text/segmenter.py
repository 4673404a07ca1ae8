"""Text segmentation designed for time to first audio.

The first segment is short (one clause, or a few words), so the listener hears audio after
synthesising only a second or so of speech. Later segments are sentences, merged while small
and split at clauses or words while too long, with a budget that grows segment by segment so
each one can be synthesised while the previous ones play.

Lengths are counted in *units*: an ASCII character is 1, any other character 2 (a kana or
hanzi carries about as much speech as two Latin letters), as Genie's own splitter does.

Boundaries per language: Japanese and Chinese full-width marks (。！？；：，、 and their half-width forms),
English and Korean "." followed by a space, "!", "?", ",", ";", ":". A mark between two digits is part of a
number ("1,000", "15:30", "3．5"), never a boundary, and a cut for length never falls inside a word of Latin
letters or a number (unless that one word is longer than the whole budget): text without spaces (Chinese,
Japanese) is cut where a run of Latin letters or digits begins or ends, or between two CJK characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCE_END = "。！？!?…\n．｡‼⁇⁈⁉"
CLAUSE_END = "、，,；;：:—､﹐﹑﹔﹕"
#: Marks that are part of a number when a digit stands on both sides ("1,000", "15:30", "3．5").
NUMBER_MARKS = ",:．，：､"
CLOSERS = "」』）)】》〉\"'”’"
#: A '.' ends a sentence when followed by whitespace or the end (not in "3.14" or "example.com").
_DOT_END = re.compile(r"\.(?=\s|$)")
_SPACES = re.compile(r"[ \t\r\f\v\u3000]+")
MIN_SEGMENT_UNITS = 4


def units(text: str) -> int:
    return sum(1 if ord(char) < 128 else 2 for char in text)


def _fits(text: str, budget: int) -> bool:
    """units(text) <= budget, reading no further than the budget (the text may be 4096 characters)."""
    used = 0
    for char in text:
        used += 1 if ord(char) < 128 else 2
        if used > budget:
            return False
    return True


@dataclass(frozen=True)
class Piece:
    text: str
    ends_sentence: bool


def _in_number(text: str, index: int) -> bool:
    """The mark at `index` stands between two digits."""
    return text[index] in NUMBER_MARKS and 0 < index < len(text) - 1 and text[index - 1].isdigit() and text[index + 1].isdigit()


def _in_word(char: str) -> bool:
    """Part of a word that must not be cut: a Latin letter or a digit."""
    return char.isdigit() or (
        char.isalpha() and (ord(char) < 0x250 or 0x1E00 <= ord(char) <= 0x1EFF or 0xFF10 <= ord(char) <= 0xFF5A)
    )


def _pieces(text: str) -> list[Piece]:
    """Split into clauses, each remembering whether it closes a sentence."""
    text = _DOT_END.sub(".\n", text.replace("\r\n", "\n"))
    pieces: list[Piece] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        current.append(char)
        index += 1
        if (char in SENTENCE_END or char in CLAUSE_END) and not _in_number(text, index - 1):
            while index < len(text) and (text[index] in SENTENCE_END or text[index] in CLAUSE_END or text[index] in CLOSERS):
                current.append(text[index])
                index += 1
            run = "".join(current)
            pieces.append(Piece(run, any(c in SENTENCE_END for c in run)))
            current = []
    if current:
        pieces.append(Piece("".join(current), True))
    cleaned = [Piece(_SPACES.sub(" ", piece.text.replace("\n", " ")).strip(), piece.ends_sentence) for piece in pieces]
    return [piece for piece in cleaned if piece.text]


def _split_long(text: str, budget: int) -> list[str]:
    """Cut `text` into parts of at most `budget` units: at a space where there is one, else where no word of
    Latin letters or digits is cut, else (a word longer than the budget) anywhere."""
    parts: list[str] = []
    while not _fits(text, budget):
        cut, used = 0, 0
        for position, char in enumerate(text):
            used += 1 if ord(char) < 128 else 2
            if used > budget:
                break
            cut = position + 1
        cut = max(cut, 1)  # a character wider than the whole budget (budget 1) is a part of its own
        space = text.rfind(" ", 0, cut + 1)
        if space > 0:
            cut = space
        elif cut < len(text):
            whole = next((at for at in range(cut, 0, -1) if not (_in_word(text[at - 1]) and _in_word(text[at]))), None)
            cut = whole or cut
        parts.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        parts.append(text)
    return [part for part in parts if part]


def halves(text: str) -> list[str]:
    """`text` cut in about two halves where no word is cut (the same rule as a cut for length), for a segment
    whose phonemes are too many for one decoding (engine/synthesis/speech.py); [text] when it cannot be cut."""
    parts = _split_long(text, max(1, (units(text) + 1) // 2))
    return parts if len(parts) > 1 else [text]


def _spaceless(char: str) -> bool:
    """A character of a script written without spaces (Han, kana, CJK punctuation and full-width forms)."""
    point = ord(char)
    return 0x2E80 <= point <= 0x30FF or 0x3400 <= point <= 0x9FFF or 0xF900 <= point <= 0xFAFF or 0xFF00 <= point <= 0xFFEF


def _join(left: str, right: str) -> str:
    """Two parts as one; a space between them unless either side is written without spaces (Korean is not)."""
    if not left:
        return right
    if _spaceless(left[-1]) or _spaceless(right[:1] or " ") or ord(left[-1]) > 0xFFFF or ord(right[:1] or " ") > 0xFFFF:
        return left + right
    return f"{left} {right}"


def segment(text: str, first_budget: int = 24, budget: int = 120) -> list[str]:
    """Cut `text` into speakable segments; empty list for text with nothing but whitespace."""
    pieces = _pieces(text)
    segments: list[str] = []
    current = ""
    limit = first_budget
    for piece in pieces:
        for part in _split_long(piece.text, limit):
            if current and units(_join(current, part)) > limit:  # the joining space counts too
                segments.append(current)
                current = ""
                limit = min(budget, limit * 2)
            current = _join(current, part)
            first_closable = not segments and units(current) >= MIN_SEGMENT_UNITS
            if first_closable:
                segments.append(current)
                current = ""
                limit = min(budget, limit * 2)
        if current and piece.ends_sentence and units(current) >= MIN_SEGMENT_UNITS:
            segments.append(current)
            current = ""
            limit = min(budget, limit * 2)
    if current:
        if segments and units(current) < MIN_SEGMENT_UNITS and units(_join(segments[-1], current)) <= budget:
            segments[-1] = _join(segments[-1], current)
        else:
            segments.append(current)
    return segments
