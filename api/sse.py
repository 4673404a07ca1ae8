"""`stream_format: "sse"`: audio as base64 in server-sent events, as OpenAI's speech API sends it."""

from __future__ import annotations

import base64

import orjson

CONTENT_TYPE = "text/event-stream"


def audio_delta(chunk: bytes) -> bytes:
    """One `speech.audio.delta` event; its audio is a piece of the same byte stream `audio` would send."""
    if not chunk:
        return b""
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")}
    return b"data: " + orjson.dumps(event) + b"\n\n"


def audio_done(input_tokens: int, output_tokens: int) -> bytes:
    """The last event. Tokens here are phonemes in and semantic (audio) tokens out: what the model counts."""
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
    return b"data: " + orjson.dumps({"type": "speech.audio.done", "usage": usage}) + b"\n\n"
