"""Segmentation for time to first audio: short first segment, sentence-sized later ones, no text lost."""

from __future__ import annotations

import re

import pytest

from engine.segmenter import MIN_SEGMENT_UNITS, segment, units


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
