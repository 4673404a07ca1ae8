"""Segmentation for time to first audio: short first segment, sentence-sized later ones, no text lost."""

from __future__ import annotations

import re

import pytest

from engine.text.segmenter import MIN_SEGMENT_UNITS, segment, units


def letters(text: str) -> str:
    """Everything that must survive segmentation: all but whitespace."""
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("こんにちは。今日はとてもいい天気ですね。", "こんにちは。"),
        ("むかしむかし、ある山のふもとに、おじいさんが住んでいました。", "むかしむかし、"),
        ("今天天气很好，我们去公园散步吧。", "今天天气很好，"),
        ("Hello there, my friend. How are you?", "Hello there,"),
    ],
)
def test_first_segment_ends_at_the_first_clause(text: str, first: str) -> None:
    assert segment(text)[0] == first


def test_first_segment_without_punctuation_is_cut_at_a_word_within_budget() -> None:
    text = "one two three four five six seven eight nine ten eleven twelve"
    segments = segment(text, first_budget=24)
    assert segments[0] == "one two three four five"
    assert units(segments[0]) <= 24
    assert " ".join(segments) == text


def test_cjk_without_punctuation_is_cut_by_budget() -> None:
    text = "あいうえおかきくけこ" * 12
    segments = segment(text, first_budget=24, budget=120)
    assert units(segments[0]) == 24
    assert all(units(piece) <= 120 for piece in segments)
    assert "".join(segments) == text


def test_later_segments_are_sentences_and_budget_grows() -> None:
    text = "はい。" + "今日はとてもいい天気ですね。" * 2 + "明日は雨が降るかもしれません、傘を持っていきましょう。"
    segments = segment(text, first_budget=24, budget=120)
    assert segments == [
        "はい。",
        "今日はとてもいい天気ですね。",
        "今日はとてもいい天気ですね。",
        "明日は雨が降るかもしれません、傘を持っていきましょう。",
    ]


def test_long_sentence_is_split_at_clauses_within_budget() -> None:
    clause = "これはとても長い文の一部分です、"
    text = "はい。" + clause * 10 + "終わり。"
    segments = segment(text, first_budget=24, budget=80)
    assert all(units(piece) <= 80 for piece in segments)
    assert all(piece.endswith(("、", "。")) for piece in segments)
    assert letters("".join(segments)) == letters(text)


def test_english_dots_inside_numbers_and_names_do_not_end_sentences() -> None:
    segments = segment("Version 3.14 of example.com is out. Try it now.", first_budget=60)
    assert segments == ["Version 3.14 of example.com is out.", "Try it now."]


def test_tiny_pieces_are_merged_and_nothing_is_lost() -> None:
    assert segment("Hi! Ok.") == ["Hi! Ok."]
    assert segment("   \n\t ") == []
    text = "「はい」と彼は言った。\n\nそれから、静かになった！本当に？"
    segments = segment(text)
    assert letters("".join(segments)) == letters(text)
    assert all(units(piece) >= MIN_SEGMENT_UNITS for piece in segments)


def test_newlines_end_sentences() -> None:
    assert segment("first line without stop\nsecond line without stop", first_budget=60) == [
        "first line without stop",
        "second line without stop",
    ]


# ---- per language, and no cut inside a word or a number ------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "你好，这是测试文本。我们一起去公园散步吧！好不好？",
            ["你好，", "这是测试文本。", "我们一起去公园散步吧！", "好不好？"],
        ),
        (
            "안녕하세요. 오늘 날씨가 정말 좋네요. 같이 산책하러 갈까요?",
            ["안녕하세요.", "오늘 날씨가 정말 좋네요.", "같이 산책하러 갈까요?"],
        ),
        (
            "Hello there. The weather is lovely today. Shall we walk?",
            ["Hello there.", "The weather is lovely today.", "Shall we walk?"],
        ),
        ("こんにちは｡元気ですか．はい", ["こんにちは｡", "元気ですか．", "はい"]),
    ],
)
def test_sentence_boundaries_per_language(text: str, expected: list[str]) -> None:
    assert segment(text) == expected


def test_marks_between_digits_are_part_of_the_number() -> None:
    assert segment("会议在15:30开始，费用是1,000元。", 24, 120) == ["会议在15:30开始，", "费用是1,000元。"]
    assert segment("It costs 1,000 dollars: cheap.", 16, 120)[0] == "It costs 1,000"


def test_cjk_without_spaces_is_never_cut_inside_a_latin_word_or_a_number() -> None:
    text = "我今天用iPhone15Pro给朋友打了一个很长很长的电话然后去了GitHub看代码12345678结束"
    parts = segment(text, 24, 48)
    assert "".join(parts) == text
    for left, right in zip(parts, parts[1:], strict=False):
        assert not (left[-1].isascii() and left[-1].isalnum() and right[0].isascii() and right[0].isalnum()), (left, right)


def test_a_word_longer_than_the_budget_is_still_cut() -> None:
    assert segment("a" * 30, 10, 10) == ["a" * 10] * 3


def test_korean_clauses_joined_keep_their_space() -> None:
    assert segment("좋아요. 네, 알겠어요. 그럼 내일 봐요!") == ["좋아요.", "네, 알겠어요.", "그럼 내일 봐요!"]


_WORDS = st.text(alphabet="abcXYZ0123456789", min_size=1, max_size=12)
_CJK = st.text(alphabet="你好世界今日はテスト안녕하세요。、，！？ ", min_size=0, max_size=12)
_PUNCT = st.sampled_from([" ", ",", ", ", ".", ". ", "。", "、", ":", "-", "%"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_CJK, _WORDS, _PUNCT), min_size=1, max_size=12), st.integers(12, 60))
def test_no_boundary_inside_a_run_of_latin_letters_or_digits(pieces: list[tuple[str, str, str]], first: int) -> None:
    """Property: wherever a segment ends, the text does not continue the same run of Latin letters or digits
    (every run here is at most 12 characters, within the smallest budget drawn)."""
    text = "".join(cjk + word + punct for cjk, word, punct in pieces)
    parts = segment(text, first, max(first, 60))
    assert letters("".join(parts)) == letters(text)
    kept = [index for index, char in enumerate(text) if not char.isspace()]  # where each segment's letters are
    position = 0
    for part in parts[:-1]:
        position += len(letters(part))
        at = kept[position]  # the first character of the next segment, in `text`
        before, after = text[at - 1], text[at]
        assert not (before.isascii() and before.isalnum() and after.isascii() and after.isalnum()), (part, text)
