"""api/sse.py: the last event's usage splits the phonemes in by language."""

from __future__ import annotations

import orjson

from api.sse import audio_done


def test_usage_counts_phonemes_per_language() -> None:
    event = audio_done(17, 40, {"zh": 12, "en": 5})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    usage = orjson.loads(event[len(b"data: ") :])["usage"]
    assert usage == {
        "input_tokens": 17,
        "output_tokens": 40,
        "total_tokens": 57,
        "input_token_details": {"languages": {"en": 5, "zh": 12}},
    }
