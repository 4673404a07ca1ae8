"""One segment of text to float audio: G2P, our own T2S decoding loop, then the vocoder.

Runs in a worker thread. This replaces Genie's `GENIE.tts`, whose loop shares one global stop
event, stops after a hard-coded 500 tokens, and replays the reference audio when decoding stops
at step 0 (`y[:, -0:]` is the whole sequence).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.voice import Reference, Voice

SAMPLE_RATE = 32000
EOS_TOKEN = 1024
#: Real speech needs 2-3 semantic tokens (25 per second) per phoneme; a slow speaker about 5.
#: The cap leaves twice that and only stops a model that would otherwise never emit EOS.
TOKENS_PER_PHONEME_CAP = 10
TOKEN_CAP_FLOOR = 50
HARD_TOKEN_CAP = 1500

# pyopenjtalk, jieba and g2pM keep global state that is not documented as thread-safe.
_G2P_LOCK = threading.Lock()


class Cancelled(Exception):
    """The request this segment belonged to went away."""


@dataclass(frozen=True)
class Phonemes:
    sequence: np.ndarray  # int64 [1, n]
    bert: np.ndarray  # float32 [n, 1024]
    symbols: tuple[str, ...]

    @property
    def count(self) -> int:
        return int(self.sequence.shape[1])

    @property
    def speakable(self) -> bool:
        """False when G2P found nothing but punctuation and prosody marks (e.g. emoji only)."""
        return any(any(char.isalpha() for char in symbol) for symbol in self.symbols)


def text_to_phonemes(text: str, language: str, prefix: str = "。") -> Phonemes:
    """G2P as Genie does it; the leading '。' keeps the model from swallowing the first word."""
    from genie_tts.G2P.SymbolsV2 import symbols_v2
    from genie_tts.GetPhonesAndBert import get_phones_and_bert

    with _G2P_LOCK:
        sequence, bert = get_phones_and_bert(prefix + text, language=language.lower())
    return Phonemes(sequence, bert, tuple(symbols_v2[int(i)] for i in sequence[0]))


def token_cap(phoneme_count: int) -> int:
    return min(HARD_TOKEN_CAP, max(TOKEN_CAP_FLOOR, TOKENS_PER_PHONEME_CAP * phoneme_count))


@dataclass(frozen=True)
class Tokens:
    """Stage one of a segment: its semantic tokens, ready for the vocoder."""

    phonemes: Phonemes
    values: np.ndarray  # int64 [n], EOS removed, possibly empty
    capped: bool
    reference: Reference  # the vocoder must use the clip the tokens were decoded with


def generate_tokens(
    voice: Voice, phonemes: Phonemes, cancel: threading.Event, ref: Reference | None = None
) -> tuple[np.ndarray, bool]:
    """Semantic tokens for the segment (EOS removed) and whether the cap stopped decoding."""
    ref = ref or voice.reference
    x, prompts = voice.encoder.run(
        None,
        {
            "ref_seq": ref.phonemes,
            "text_seq": phonemes.sequence,
            "ref_bert": ref.bert,
            "text_bert": phonemes.bert,
            "ssl_content": ref.ssl,
        },
    )
    prompt_length = prompts.shape[1]
    y, y_emb, *cache = voice.first_stage_decoder.run(None, {"x": x, "prompts": prompts})
    names = [item.name for item in voice.stage_decoder.get_inputs()]
    cap = token_cap(phonemes.count)
    stopped = False
    while y.shape[1] - prompt_length < cap:
        if cancel.is_set():
            raise Cancelled
        y, y_emb, stop, *cache = voice.stage_decoder.run(None, dict(zip(names, [y, y_emb, *cache])))
        if stop:
            stopped = True
            break
    generated = y[0, prompt_length:]
    eos = np.flatnonzero(generated >= EOS_TOKEN)
    if eos.size:
        generated = generated[: eos[0]]
    return generated, not stopped


def text_to_tokens(voice: Voice, phonemes: Phonemes, cancel: threading.Event, ref: Reference | None = None) -> Tokens:
    ref = ref or voice.reference
    tokens, capped = generate_tokens(voice, phonemes, cancel, ref)
    return Tokens(phonemes, tokens, capped, ref)


def vocode(voice: Voice, tokens: Tokens) -> np.ndarray:
    """Stage two: semantic tokens to float32 mono audio at SAMPLE_RATE (empty for no tokens)."""
    if tokens.values.size == 0:
        return np.zeros(0, dtype=np.float32)
    semantic = tokens.values[None, None, :].astype(np.int64)
    sequence = tokens.phonemes.sequence
    ref = tokens.reference
    if voice.prompt_encoder is None:
        feed = {"text_seq": sequence, "pred_semantic": semantic, "ref_audio": ref.audio_32k}
    else:
        feed = {"text_seq": sequence, "pred_semantic": semantic, "ge": ref.ge, "ge_advanced": ref.ge_advanced}
    return np.asarray(voice.vocoder.run(None, feed)[0], dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class SegmentResult:
    audio: np.ndarray  # float32 mono at SAMPLE_RATE, possibly empty
    tokens: int
    capped: bool


def synthesize(voice: Voice, phonemes: Phonemes, cancel: threading.Event) -> SegmentResult:
    """Both stages in one call (the server pipelines them instead: see engine/speech.py)."""
    tokens = text_to_tokens(voice, phonemes, cancel)
    if cancel.is_set():
        raise Cancelled
    return SegmentResult(vocode(voice, tokens), int(tokens.values.size), tokens.capped)
