"""The limits of one segment's decoding, and the vocoder call that turns some of its tokens into audio.

engine/synthesis/speech.py runs the decoding (engine/synthesis/decoding.py) and these vocoder calls as scheduler jobs, in place
of Genie's `GENIE.tts`.
"""

from __future__ import annotations

import numpy as np

from engine.text.g2p import Phonemes
from engine.voices.voice import Reference, Voice

#: Real speech needs 2-3 semantic tokens (25 per second) per phoneme; a slow speaker about 5.
#: The cap leaves twice that, to stop a model that would otherwise never emit EOS.
TOKENS_PER_PHONEME_CAP = 10
TOKEN_CAP_FLOOR = 50
HARD_TOKEN_CAP = 1500
SLOW_TOKENS_PER_PHONEME = 5
#: Segments are bounded in phonemes (engine/synthesis/speech.py splits longer ones at word boundaries), so that even a
#: slow speaker finishes every segment under the hard cap: 300 phonemes (a 120-unit run of digits read in
#: English is about 800, kanji with long readings about 5 per character).
MAX_SEGMENT_PHONEMES = HARD_TOKEN_CAP // SLOW_TOKENS_PER_PHONEME


class TokenCapReached(Exception):
    """A segment reached its token cap before the model ended it: the rest of its words would be lost, so the
    stream is broken rather than ended as if complete."""


def token_cap(phoneme_count: int) -> int:
    return min(HARD_TOKEN_CAP, max(TOKEN_CAP_FLOOR, TOKENS_PER_PHONEME_CAP * phoneme_count))


def vocode_values(voice: Voice, phonemes: Phonemes, reference: Reference, values: np.ndarray) -> np.ndarray:
    """Some of a segment's tokens to audio; the vocoder always sees the whole segment's phonemes."""
    if values.size == 0:
        return np.zeros(0, dtype=np.float32)
    semantic = values[None, None, :].astype(np.int64)
    sequence = phonemes.sequence
    if reference.ge is None:  # a V2 voice: its vocoder takes the clip itself
        feed = {"text_seq": sequence, "pred_semantic": semantic, "ref_audio": reference.audio_32k}
    else:
        feed = {"text_seq": sequence, "pred_semantic": semantic, "ge": reference.ge, "ge_advanced": reference.ge_advanced}
    return np.asarray(voice.vocoder.run(None, feed)[0], dtype=np.float32).reshape(-1)
