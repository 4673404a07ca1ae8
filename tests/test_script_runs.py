"""engine/text/script_runs.py: which language each run of a text is read in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.text.languages import CODES
from engine.text.script_runs import script_runs


def runs(text: str, voice: str, forced: str | None = None) -> list[tuple[str, str]]:
    return [(run.text, run.language) for run in script_runs(text, voice, forced)]


@pytest.mark.parametrize(
    ("text", "voice", "expected"),
    [
        ("我用 iPhone 打电话", "zh", [("我用 ", "zh"), ("iPhone ", "en"), ("打电话", "zh")]),
        ("今日は GitHub を見た", "ja", [("今日は ", "ja"), ("GitHub ", "en"), ("を見た", "ja")]),
        ("안녕하세요 iPhone 15를 샀다", "ko", [("안녕하세요 ", "ko"), ("iPhone ", "en"), ("15를 샀다", "ko")]),
        ("Hello, world!", "ja", [("Hello, world!", "en")]),
    ],
)
def test_each_script_is_its_language(text: str, voice: str, expected: list[tuple[str, str]]) -> None:
    assert runs(text, voice) == expected


@pytest.mark.parametrize(
    ("voice", "expected"),
    [("zh", "zh"), ("ja", "ja"), ("en", "zh"), ("ko", "zh")],
)
def test_han_is_the_voices_language_when_chinese_or_japanese_else_chinese(voice: str, expected: str) -> None:
    assert runs("天气很好", voice) == [("天气很好", expected)]


def test_han_next_to_kana_is_japanese_in_a_voice_of_another_language() -> None:
    assert runs("今日は晴れ", "en") == [("今日は晴れ", "ja")]
    assert runs("今日は晴れ", "zh") == [("今日", "zh"), ("は", "ja"), ("晴", "zh"), ("れ", "ja")]  # Han: the voice's


@pytest.mark.parametrize(
    ("text", "voice", "expected"),
    [
        # a number joins the run it touches...
        ("3月", "zh", [("3月", "zh")]),
        ("3月", "ja", [("3月", "ja")]),
        ("GPT-4o", "zh", [("GPT-4o", "en")]),
        ("GPT-4o", "ko", [("GPT-4o", "en")]),
        ("增长了100%。", "zh", [("增长了100%。", "zh")]),
        ("100%です", "ja", [("100%です", "ja")]),
        ("100%가", "ko", [("100%가", "ko")]),
        ("100% sure", "zh", [("100% sure", "en")]),
        ("重3.5kg的苹果", "zh", [("重3.5kg的苹果", "zh")]),
        ("3.5kgです", "ja", [("3.5kgです", "ja")]),
        ("花了$20", "zh", [("花了$20", "zh")]),
        ("15:30に会う", "ja", [("15:30に会う", "ja")]),
        ("A4纸", "zh", [("A4", "en"), ("纸", "zh")]),  # touching both: the run before wins
        # ...else the run before it
        ("我买了iPhone 15。", "zh", [("我买了", "zh"), ("iPhone 15。", "en")]),
        ("iPhone 15 발표", "ko", [("iPhone 15 ", "en"), ("발표", "ko")]),
        ("我有 3 个 apple", "zh", [("我有 3 个 ", "zh"), ("apple", "en")]),
        # a text of no script at all is the voice's language
        ("123!", "ko", [("123!", "ko")]),
        ("...", "ja", [("...", "ja")]),
    ],
)
def test_digits_spaces_and_punctuation_join_a_run(text: str, voice: str, expected: list[tuple[str, str]]) -> None:
    assert runs(text, voice) == expected


def test_forced_language_is_one_run() -> None:
    assert runs("我用 iPhone 打电话", "zh", "en") == [("我用 iPhone 打电话", "en")]
    assert runs("", "zh", "en") == []


@given(st.text(max_size=60), st.sampled_from(CODES))
def test_runs_cover_the_text_exactly_and_alternate(text: str, voice: str) -> None:
    found = script_runs(text, voice)
    assert "".join(run.text for run in found) == text
    assert all(run.text and run.language in CODES for run in found)
    assert all(left.language != right.language for left, right in zip(found, found[1:], strict=False))
