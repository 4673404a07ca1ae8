"""engine/text/g2p.py: each run of a segment read by its own language's G2P and the results joined in order.

Genie's G2P and the Korean G2P are replaced by recording stand-ins here (Genie needs GenieData, a demo build:
the e2e tests read real text); what is checked is the routing, the order, the prefix, the BERT features and
the counts per language.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import genie
from engine.text import g2p

#: A small symbol table: the stand-ins' phonemes are its indices.
SYMBOLS = ["_", ".", "a", "b", "c", "k", "o", "z", "ㄱ", "ㅏ", "空"]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Genie's G2P stand-in: one phoneme 'a' per character (its language's letter for Chinese/English), '.' for '。'."""
    seen: list[tuple[str, str]] = []
    letter = {"japanese": "a", "chinese": "z", "english": "o"}

    def phones_and_bert(text: str, language: str) -> tuple[np.ndarray, np.ndarray]:
        seen.append((text, language.lower()))
        ids = [SYMBOLS.index("." if char == "。" else letter[language.lower()]) for char in text if not char.isspace()]
        bert = np.full((len(ids), 1024), 7.0 if language.lower() == "chinese" else 0.0, dtype=np.float32)
        return np.array([ids], dtype=np.int64), bert

    def korean_to_symbols(text: str) -> list[str]:
        """Like the real one, a text ending on a letter gets a closing '.'."""
        seen.append((text, "korean"))
        return ["ㄱ", "ㅏ", "空"] if text.endswith(" ") else ["ㄱ", "ㅏ", "."]

    monkeypatch.setattr(genie, "phones_and_bert", phones_and_bert)
    monkeypatch.setattr(genie, "symbol_table", lambda: SYMBOLS)
    monkeypatch.setattr(g2p, "korean_to_symbols", korean_to_symbols)
    return seen


def test_mixed_text_is_read_run_by_run_and_joined(calls: list[tuple[str, str]]) -> None:
    phonemes = g2p.text_to_phonemes("我用iPhone打电话", "zh")
    assert calls == [("。我用", "chinese"), ("iPhone", "english"), ("打电话", "chinese")]  # the prefix once, first
    assert phonemes.symbols == (".", "z", "z", *"oooooo", "z", "z", "z")
    assert phonemes.languages == {"zh": 6, "en": 6}
    assert phonemes.count == 12 == sum(phonemes.languages.values())
    # BERT: Genie's for the Chinese runs, zeros for the English one, in the same order as the phonemes
    assert phonemes.bert.shape == (12, 1024)
    assert [float(row[0]) for row in phonemes.bert] == [7.0] * 3 + [0.0] * 6 + [7.0] * 3


def test_korean_runs_go_to_the_korean_g2p(calls: list[tuple[str, str]]) -> None:
    phonemes = g2p.text_to_phonemes("안녕 GPT", "ja")
    assert calls == [("안녕 ", "korean"), ("GPT", "english")]
    assert phonemes.symbols == (".", "ㄱ", "ㅏ", "空", "o", "o", "o")  # '。' is '.' for Korean
    assert phonemes.languages == {"ko": 4, "en": 3}
    assert not phonemes.bert.any()


def test_a_korean_run_mid_sentence_loses_the_closing_period_korean_g2p_adds(calls: list[tuple[str, str]]) -> None:
    middle = g2p.text_to_phonemes("안녕GPT", "ko")
    assert calls == [("안녕", "korean"), ("GPT", "english")]
    assert middle.symbols == (".", "ㄱ", "ㅏ", "o", "o", "o")  # no pause between the runs
    assert g2p.text_to_phonemes("GPT 안녕", "ko").symbols[-3:] == ("ㄱ", "ㅏ", ".")  # at the end it stays


def test_forced_language_reads_everything_in_it(calls: list[tuple[str, str]]) -> None:
    phonemes = g2p.text_to_phonemes("我用iPhone", "zh", forced="en")
    assert calls == [("。我用iPhone", "english")]
    assert phonemes.languages == {"en": 9}  # "。", 2 hanzi and 6 letters, all in English


def test_runs_are_normalised_in_their_language(calls: list[tuple[str, str]]) -> None:
    g2p.text_to_phonemes("花了$20", "zh", prefix="")
    g2p.text_to_phonemes("15:30に", "ja", prefix="")
    assert calls == [("花了20美元", "chinese"), ("15時30分に", "japanese")]


def test_g2p_takes_codes_only(calls: list[tuple[str, str]]) -> None:
    """One meaning of "language" inside the engine: a code; a name or an unknown code is a mistake of the caller."""
    for wrong in ("Japanese", "fr"):
        with pytest.raises(ValueError, match="unknown language code"):
            g2p.text_to_phonemes("こんにちは", wrong)
    with pytest.raises(ValueError, match="unknown language code"):
        g2p.text_to_phonemes("こんにちは", "ja", forced="English")
