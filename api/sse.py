"""`stream_format: "sse"`: audio as base64 in server-sent events, as OpenAI's speech API sends it."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import orjson

CONTENT_TYPE = "text/event-stream"


def audio_delta(chunk: bytes) -> bytes:
    """One `speech.audio.delta` event; its audio is a piece of the same byte stream `audio` would send."""
    if not chunk:
        return b""
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")}
    return b"data: " + orjson.dumps(event) + b"\n\n"


def audio_done(input_tokens: int, output_tokens: int, languages: Mapping[str, int] | None = None) -> bytes:
    """The last event. Tokens here are phonemes in and semantic (audio) tokens out: what the model counts.
    `input_token_details.languages` splits the phonemes in by the language each run of text was read in."""
    usage: dict[str, object] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "input_token_details": {"languages": dict(sorted((languages or {}).items()))},
    }
    return b"data: " + orjson.dumps({"type": "speech.audio.done", "usage": usage}) + b"\n\n"
