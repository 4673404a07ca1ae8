"""Parsing and validating the body of POST /v1/audio/speech."""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from api.errors import bad_request
from engine.interface import language_code, language_spellings
from wavstream.formats import OPENAI_FORMATS

#: OpenAI's model names; clients such as SillyTavern send them and cannot change them.
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
SPEED_RANGE = (0.25, 4.0)
STREAM_FORMATS = ("audio", "sse")
MAX_INSTRUCTIONS_CHARS = 4096
#: RFC 8259 lets a parser ignore a leading byte order mark. Windows tools write one (PowerShell 5's
#: `Set-Content -Encoding UTF8`, older Notepad), and `curl -d @file` sends it; Python's json accepts it.
UTF8_BOM = b"\xef\xbb\xbf"


def is_openai_model(name: str) -> bool:
    return any(name == model or name.startswith(model + "-") for model in OPENAI_MODELS)


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str | None
    response_format: str
    speed: float
    stream_format: str
    language: str | None = None  # a code (engine/text/languages.py); None: "auto"


def _optional_string(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string", name, "invalid_type")
    return value


def parse_speech_request(raw: bytes, max_input_chars: int, default_format: str = "wav") -> SpeechRequest:
    raw = raw.removeprefix(UTF8_BOM)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"the body is not valid JSON: {error}", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", None, "invalid_json")

    model = _optional_string(body, "model")
    if not model:
        raise bad_request("'model' is required: the name of a voice (see GET /v1/models)", "model", "missing_required_parameter")

    text = body.get("input")
    if text is None:
        raise bad_request("'input' is required: the text to speak", "input", "missing_required_parameter")
    if not isinstance(text, str):
        raise bad_request("'input' must be a string", "input", "invalid_type")
    if not text.strip():
        raise bad_request("'input' is empty", "input")
    if len(text) > max_input_chars:
        raise bad_request(
            f"'input' has {len(text)} characters; the limit is {max_input_chars}", "input", "string_above_max_length"
        )

    voice = body.get("voice")
    if isinstance(voice, dict):
        voice = voice.get("id")
        if not isinstance(voice, str):
            raise bad_request('\'voice\' as an object must be {"id": "<name>"}', "voice", "invalid_type")
    elif voice is not None and not isinstance(voice, str):
        raise bad_request('\'voice\' must be a string or {"id": "<name>"}', "voice", "invalid_type")

    response_format = _optional_string(body, "response_format") or default_format
    if response_format not in OPENAI_FORMATS:
        raise bad_request(f"'response_format' must be one of {', '.join(OPENAI_FORMATS)}", "response_format")

    speed = body.get("speed", 1.0)
    if speed is None:
        speed = 1.0
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed):
        raise bad_request("'speed' must be a number", "speed", "invalid_type")
    low, high = SPEED_RANGE
    if not low <= speed <= high:
        raise bad_request(f"'speed' must be between {low} and {high}", "speed")

    stream_format = _optional_string(body, "stream_format") or "audio"
    if stream_format not in STREAM_FORMATS:
        raise bad_request("'stream_format' must be 'audio' or 'sse'", "stream_format")

    instructions = _optional_string(body, "instructions")
    if instructions is not None and len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise bad_request(
            f"'instructions' is limited to {MAX_INSTRUCTIONS_CHARS} characters", "instructions", "string_above_max_length"
        )

    # `language`: one language for the whole input, or "auto" (None: each run of script in its own).
    given = _optional_string(body, "language") or "auto"
    language = None if given.lower() == "auto" else language_code(given)
    if language is None and given.lower() != "auto":
        raise bad_request(f"'language' must be one of auto, {language_spellings()}; got {given[:40]!r}", "language")

    return SpeechRequest(model, text, voice, response_format, float(speed), stream_format, language)
