"""One segment's phonemes to float audio: our own T2S decoding loop, then the vocoder.

Runs in a worker thread. This replaces Genie's `GENIE.tts`, whose loop shares one global stop
event, stops after a hard-coded 500 tokens, and replays the reference audio when decoding stops
at step 0 (`y[:, -0:]` is the whole sequence).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.audio_budget import AudioLimitReached
from engine.g2p import Phonemes
from engine.voice import Reference, Voice

SAMPLE_RATE = 32000
EOS_TOKEN = 1024
#: Real speech needs 2-3 semantic tokens (25 per second) per phoneme; a slow speaker about 5.
#: The cap leaves twice that, to stop a model that would otherwise never emit EOS. Known gap: segments are
#: bounded in characters, not phonemes, and a dense one (a 120-unit run of digits is about 650 phonemes)
#: passes the hard cap's 1500 tokens even at a normal pace, so its end is cut.
TOKENS_PER_PHONEME_CAP = 10
TOKEN_CAP_FLOOR = 50
HARD_TOKEN_CAP = 1500


class Cancelled(Exception):
    """The request this segment belonged to went away."""


def token_cap(phoneme_count: int) -> int:
    return min(HARD_TOKEN_CAP, max(TOKEN_CAP_FLOOR, TOKENS_PER_PHONEME_CAP * phoneme_count))


@dataclass(frozen=True)
class Tokens:
    """Stage one of a segment: its semantic tokens, ready for the vocoder."""

    phonemes: Phonemes
    values: np.ndarray  # int64 [n], EOS removed, possibly empty
    capped: bool
    reference: Reference  # the vocoder must use the clip the tokens were decoded with


def text_to_tokens(
    voice: Voice, phonemes: Phonemes, reference: Reference, cancel: threading.Event, budget: int = HARD_TOKEN_CAP
) -> Tokens:
    """Stage one: the T2S decoding loop, checking `cancel` between steps and stopping at the token cap.

    `budget` is what is left of the request's audio limit, in tokens: a segment that needs more raises
    AudioLimitReached, since cutting it short would send less than the text as if it were all.
    """
    x, prompts = voice.encoder.run(
        None,
        {
            "ref_seq": reference.phonemes,
            "text_seq": phonemes.sequence,
            "ref_bert": reference.bert,
            "text_bert": phonemes.bert,
            "ssl_content": reference.ssl,
        },
    )
    prompt_length = prompts.shape[1]
    y, y_emb, *cache = voice.first_stage_decoder.run(None, {"x": x, "prompts": prompts})
    names = [item.name for item in voice.stage_decoder.get_inputs()]
    cap = min(token_cap(phonemes.count), budget)
    stopped = False
    while y.shape[1] - prompt_length < cap:
        if cancel.is_set():
            raise Cancelled
        y, y_emb, stop, *cache = voice.stage_decoder.run(None, dict(zip(names, [y, y_emb, *cache], strict=True)))
        if stop:
            stopped = True
            break
    if not stopped and cap < token_cap(phonemes.count):
        raise AudioLimitReached
    generated = y[0, prompt_length:]
    eos = np.flatnonzero(generated >= EOS_TOKEN)
    if eos.size:
        generated = generated[: eos[0]]
    return Tokens(phonemes, generated, not stopped, reference)


def vocode(voice: Voice, tokens: Tokens) -> np.ndarray:
    """Stage two: semantic tokens to float32 mono audio at SAMPLE_RATE (empty for no tokens)."""
    if tokens.values.size == 0:
        return np.zeros(0, dtype=np.float32)
    semantic = tokens.values[None, None, :].astype(np.int64)
    sequence = tokens.phonemes.sequence
    reference = tokens.reference
    if voice.prompt_encoder is None:
        feed = {"text_seq": sequence, "pred_semantic": semantic, "ref_audio": reference.audio_32k}
    else:
        feed = {"text_seq": sequence, "pred_semantic": semantic, "ge": reference.ge, "ge_advanced": reference.ge_advanced}
    return np.asarray(voice.vocoder.run(None, feed)[0], dtype=np.float32).reshape(-1)
