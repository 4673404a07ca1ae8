"""The token cap of the decoding loop, as a rule (see engine/synthesis/vocoding.py for what it is meant to stop).

tests/test_engine_inprocess.py shows on the demo voice that the cap stops such a model and that a slow
speaker (5 tokens per phoneme) is not capped on the densest segments the segmenter makes.
"""

from __future__ import annotations

from engine.synthesis.vocoding import token_cap


def test_token_cap_rule() -> None:
    """Literal values, so that changing any of the three constants fails here and must be argued for."""
    assert [token_cap(n) for n in (0, 1, 4, 5)] == [50, 50, 50, 50]  # the floor: 50 tokens (2 s)
    assert [token_cap(n) for n in (6, 7, 24, 100, 149)] == [60, 70, 240, 1000, 1490]  # 10 per phoneme
    assert [token_cap(n) for n in (150, 151, 299, 300, 1000)] == [1500] * 5  # the hard cap: 1500 tokens (60 s)
