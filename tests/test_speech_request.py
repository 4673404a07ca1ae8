"""Parsing of the speech request body (the end-to-end tests check the HTTP side of each error)."""

from __future__ import annotations

import orjson
import pytest

from api.errors import ApiError
from api.speech_request import is_openai_model, parse_speech_request
from engine.text.languages import SPELLINGS
from engine.voices.voice_folder import normalize_language


def parse(body: object) -> object:
    return parse_speech_request(orjson.dumps(body), max_input_chars=100)


def test_defaults_and_voice_forms() -> None:
    request = parse({"model": "demo", "input": "hi"})
    assert (request.voice, request.response_format, request.speed, request.stream_format) == (None, "wav", 1.0, "audio")
    assert parse({"model": "m", "input": "hi", "voice": {"id": "demo"}}).voice == "demo"
    assert parse({"model": "m", "input": "hi", "voice": "alloy", "speed": 4, "extra": {"x": 1}}).speed == 4.0


@pytest.mark.parametrize(
    "body",
    [
        {"model": "demo", "input": "x" * 101},
        {"model": "demo", "input": "hi", "speed": 0.2},
        {"model": "demo", "input": "hi", "speed": True},
        {"model": "demo", "input": "hi", "voice": {"name": "demo"}},
        {"model": "demo", "input": "hi", "instructions": 5},
        {"model": "", "input": "hi"},
        {"model": 3, "input": "hi"},
    ],
)
def test_rejected_bodies(body: object) -> None:
    with pytest.raises(ApiError) as caught:
        parse(body)
    assert caught.value.status == 400


def test_error_body_is_openai_shaped() -> None:
    with pytest.raises(ApiError) as caught:
        parse_speech_request(b"{", max_input_chars=10)
    assert orjson.loads(caught.value.body()) == {
        "error": {"message": caught.value.message, "type": "invalid_request_error", "param": None, "code": "invalid_json"}
    }


def test_openai_model_names() -> None:
    assert all(is_openai_model(name) for name in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-03-20"))
    assert not any(is_openai_model(name) for name in ("demo", "tts-2", "gpt-4o"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("auto", None),
        ("AUTO", None),
        ("ja", "ja"),
        ("Japanese", "ja"),
        ("jp", "ja"),  # as a reference's config.json accepts it
        ("JP", "ja"),
        ("ZH", "zh"),
        ("chinese", "zh"),
        ("en", "en"),
        ("English", "en"),
        ("ko", "ko"),
        ("KOREAN", "ko"),
    ],
)
def test_language_codes_and_long_names(value: str | None, expected: str | None) -> None:
    assert parse({"model": "demo", "input": "hi", "language": value}).language == expected


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_a_spelling_means_the_same_in_a_request_and_in_config_json(spelling: str) -> None:
    """One table of languages: what a reference's config.json accepts, a request's `language` accepts too."""
    code = SPELLINGS[spelling]
    assert parse({"model": "demo", "input": "hi", "language": spelling.upper()}).language == code
    assert normalize_language(f" {spelling.title()} ") == code


@pytest.mark.parametrize("value", ["fr", "jpn", " ja", "ja\n", "\u212ao", "all_zh", 1, ["ja"]])
def test_unknown_language_is_a_400_naming_the_field_and_the_accepted_values(value: object) -> None:
    with pytest.raises(ApiError) as caught:
        parse({"model": "demo", "input": "hi", "language": value})
    error = caught.value
    assert (error.status, error.param) == (400, "language")
    if isinstance(value, str):
        assert all(spelling in error.message for spelling in ("auto", *SPELLINGS))
