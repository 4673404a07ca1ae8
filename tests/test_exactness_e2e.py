"""Exactness: our synthesis says what genie_tts's own pipeline says, token for token, sample for sample.

Our stand-in for listening to a trained voice (none can be downloaded here). Both run the demo voice made
deterministic (engine/tools/deterministic.py: greedy decoders, noise-free vocoder) on the same sessions:

* ours: G2P, encoder, our decoding loop and our vocoder call (engine/synthesis/decoding.py's `SegmentDecoder` and
  engine/synthesis/vocoding.py's `vocode_values`, through tests/engine_helpers.py; one segment, no chunking), with our
  own reference features (engine/voices/voice.py);
* Genie's: `GENIE.tts` (its G2P, `t2s_cpu` loop and vocoder call) with its own `ReferenceAudio` features.

Deliberate differences, each asserted as an exact relation rather than skipped:

1. Genie ends `t2s_cpu` with `y[0, -1] = 0` and `y[:, -idx:]`, `idx` being the index of its last loop step:
   that drops the first two generated tokens and vocodes a 0 in place of the last one (EOS, or here the token
   the demo's length rule stopped on). Upstream GPT-SoVITS keeps every generated token before EOS, and so do we.
   So Genie's tokens are ours with the first two dropped and the last replaced by 0.
2. When decoding stops at step 0, `y[:, -0:]` is the whole sequence: Genie vocodes the reference's own
   semantic tokens (it replays the reference); we vocode the two generated tokens.
3. Genie's player converts with `(audio * 32767).astype(int16)`, which wraps around beyond ±1.0; our encoders
   clip. Both are after the float audio compared here (tests/test_wavstream.py covers our clipping).

Audio: the same tokens through Genie's vocoder feed (its G2P, its reference embeddings) and through ours give
the same float samples within AUDIO_TOLERANCE; tokens must match exactly. The demo voice's random vocoder barely
depends on anything but the number of tokens (its speaker embeddings move the audio by about 1e-9), so the
inputs of the encoder and the vocoder are also compared, call by call: that is what catches a wrong reference.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

pytestmark = pytest.mark.e2e

#: Largest allowed sample difference: the two sides compute the reference's HuBERT features and speaker
#: embedding in different onnxruntime sessions (different graph optimisations), which may differ in the last
#: float bits; the demo's audio peaks near 0.01, so 1e-6 is about -80 dB below it.
AUDIO_TOLERANCE = 1e-6
#: The same for the reference features (HuBERT output, speaker embeddings) fed to the encoder and the vocoder.
FEATURE_TOLERANCE = 1e-5
TEXTS = {
    "short": "こんにちは、",
    "sentence": "今日はとてもいい天気なので、公園まで散歩に行きましょう。",
}


@dataclasses.dataclass(frozen=True)
class Sides:
    voice: object  # engine.voices.voice.Voice on the deterministic copy
    genie_reference: dict  # style name ("" for the default) -> Genie's ReferenceAudio
    prompt_encoder: object  # the session Genie computes its speaker embeddings with (ours releases it after loading)
    genie_stage_decoder: object  # Genie's own graph: ours attends through an in-place cache (engine/models/decoder_graph.py)


@pytest.fixture(scope="module")
def sides(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sides]:
    from engine.genie import import_genie
    from engine.models.sessions import in_memory_session
    from engine.tools.deterministic import deterministic_voice
    from engine.voices.voice import SharedModels, load_voice
    from engine.voices.voice_folder import inspect_voice

    genie_data = demo_root / "GenieData"
    import_genie(genie_data)
    from genie_tts.Audio.ReferenceAudio import ReferenceAudio

    folder = inspect_voice(deterministic_voice(demo_root / "demo", tmp_path_factory.mktemp("exact")), genie_data)
    voice = load_voice(folder, SharedModels.load(genie_data, 2), 2)
    clips = {"": folder.reference, **folder.styles}
    references = {name: ReferenceAudio(str(clip.audio), clip.text, "japanese") for name, clip in clips.items()}
    models = folder.models
    prompt_encoder = in_memory_session(models / "prompt_encoder_fp32.onnx", models / "prompt_encoder_fp16.bin", 2)
    genie_stage = in_memory_session(models / "t2s_stage_decoder_fp32.onnx", models / "t2s_shared_fp16.bin", 2)
    yield Sides(voice, references, prompt_encoder, genie_stage)


class Recorder:
    """An onnxruntime session that keeps the feed of every run."""

    def __init__(self, session) -> None:
        self.session, self.feeds = session, []

    def run(self, names, feed):
        self.feeds.append(feed)
        return self.session.run(names, feed)

    def __getattr__(self, name: str):
        return getattr(self.session, name)


def recording(voice):
    """The voice with its encoder and vocoder recording their inputs."""
    return dataclasses.replace(voice, encoder=Recorder(voice.encoder), vocoder=Recorder(voice.vocoder))


def assert_same_inputs(ours_feed: dict, genies_feed: dict, skip: tuple[str, ...] = ()) -> None:
    assert sorted(ours_feed) == sorted(genies_feed)
    for name in sorted(set(ours_feed) - set(skip)):
        mine, theirs = np.asarray(ours_feed[name]), np.asarray(genies_feed[name])
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype, name
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=FEATURE_TOLERANCE, err_msg=name)


def ours(voice, text: str, style: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Our tokens and audio for one segment, exactly as the server's two jobs make them."""
    from engine.text.g2p import text_to_phonemes
    from tests.engine_helpers import text_to_tokens, vocode

    tokens = text_to_tokens(voice, text_to_phonemes(text, voice.language), voice.reference_for(style), threading.Event())
    return tokens.values, vocode(voice, tokens)


def genies(voice, reference, text: str, prompt_encoder) -> tuple[np.ndarray, np.ndarray]:
    """Genie's tokens (what its `t2s_cpu` returned inside `GENIE.tts`) and audio."""
    from genie_tts.Core.Inference import GENIE

    engine, seen = GENIE(), []
    decode = engine.t2s_cpu

    def recording(**kwargs: object) -> np.ndarray:
        seen.append(decode(**kwargs))
        return seen[-1]

    engine.t2s_cpu = recording
    audio = engine.tts(
        text,
        reference,
        voice.encoder,
        voice.first_stage_decoder,
        voice.stage_decoder,
        voice.vocoder,
        prompt_encoder,
        "japanese",
    )
    (tokens,) = seen
    return tokens.reshape(-1).copy(), np.asarray(audio, dtype=np.float32).reshape(-1)


def genie_vocoder(voice, reference, text: str, tokens: np.ndarray, prompt_encoder) -> np.ndarray:
    """Genie's vocoder call (its G2P of the text, its reference embeddings) on given tokens."""
    from genie_tts.GetPhonesAndBert import get_phones_and_bert

    text_seq, _ = get_phones_and_bert("。" + text, language="japanese")
    reference.update_global_emb(prompt_encoder=prompt_encoder)
    feed = {
        "text_seq": text_seq,
        "pred_semantic": tokens[None, None, :].astype(np.int64),
        "ge": reference.global_emb,
        "ge_advanced": reference.global_emb_advanced,
    }
    return np.asarray(voice.vocoder.run(None, feed)[0], dtype=np.float32).reshape(-1)


def assert_same_audio(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert np.abs(expected).max() > 1e-3  # not silence: a comparison of zeros proves nothing
    np.testing.assert_allclose(actual, expected, rtol=0, atol=AUDIO_TOLERANCE)


@pytest.mark.parametrize(
    ("text", "style"),
    [(TEXTS["short"], None), (TEXTS["sentence"], None), (TEXTS["sentence"], "calm")],
    ids=["short", "sentence", "sentence-calm-style"],
)
def test_our_tokens_and_audio_are_genies(sides: Sides, text: str, style: str | None) -> None:
    reference = sides.genie_reference[style or ""]
    mine = recording(sides.voice)
    theirs = recording(dataclasses.replace(sides.voice, stage_decoder=sides.genie_stage_decoder))
    our_tokens, our_audio = ours(mine, text, style)
    genie_tokens, genie_audio = genies(theirs, reference, text, sides.prompt_encoder)
    voice = sides.voice

    # The same text and reference reach the encoder and the vocoder (tokens aside: difference 1, below).
    assert_same_inputs(mine.encoder.feeds[0], theirs.encoder.feeds[0])
    assert_same_inputs(mine.vocoder.feeds[0], theirs.vocoder.feeds[0], skip=("pred_semantic",))

    assert our_tokens.size >= 3 and not np.any(our_tokens >= 1024)
    # Difference 1: Genie drops our first two tokens and vocodes a 0 in place of our last.
    np.testing.assert_array_equal(genie_tokens, [*our_tokens[2:-1], 0])
    # Its audio is its tokens through our vocoder feed, and our audio is ours through its feed.
    assert_same_audio(genie_audio, ours_vocoder(voice, text, genie_tokens, style))
    assert_same_audio(our_audio, genie_vocoder(voice, reference, text, our_tokens, sides.prompt_encoder))


def ours_vocoder(voice, text: str, tokens: np.ndarray, style: str | None) -> np.ndarray:
    from engine.text.g2p import text_to_phonemes
    from tests.engine_helpers import Tokens, vocode

    phonemes = text_to_phonemes(text, voice.language)
    return vocode(voice, Tokens(phonemes, tokens.astype(np.int64), False, voice.reference_for(style)))


def stop_at_step_zero(voice, tmp_path: Path):
    """The voice with a stage decoder whose stop condition fires at its first step."""
    from engine.models.sessions import in_memory_session

    models = voice.folder.models
    graph = onnx.load(models / "t2s_stage_decoder_fp32.onnx", load_external_data=False)
    stop = next(node for node in graph.graph.node if "stop_condition_tensor" in node.output)
    stop.output[0] = "stop_before_forcing"
    graph.graph.node.extend(
        [
            onnx.helper.make_node(
                "Constant", [], ["always"], value=onnx.helper.make_tensor("always", onnx.TensorProto.BOOL, [], [True])
            ),
            onnx.helper.make_node("Or", ["stop_before_forcing", "always"], ["stop_condition_tensor"]),
        ]
    )
    onnx.save(graph, tmp_path / "stage_stops_at_once.onnx")
    stage = in_memory_session(tmp_path / "stage_stops_at_once.onnx", models / "t2s_shared_fp16.bin", 2)
    return dataclasses.replace(voice, stage_decoder=stage)


def test_a_stop_at_step_zero_replays_the_reference_in_genie_and_not_in_ours(sides: Sides, tmp_path: Path) -> None:
    """Difference 2: Genie's `y[:, -0:]` vocodes the reference's own tokens; we vocode what was generated."""
    voice = stop_at_step_zero(sides.voice, tmp_path)
    reference = sides.genie_reference[""]
    text = TEXTS["sentence"]
    our_tokens, our_audio = ours(voice, text)
    genie_tokens, genie_audio = genies(voice, reference, text, sides.prompt_encoder)

    prompts = voice.encoder.run(
        None,
        {
            "ref_seq": reference.phonemes_seq,
            "text_seq": voice_phonemes(voice, text).sequence,
            "ref_bert": reference.text_bert,
            "text_bert": voice_phonemes(voice, text).bert,
            "ssl_content": reference.ssl_content,
        },
    )[1][0]
    assert our_tokens.size == 2  # the first stage's token and the one the stopping step made
    np.testing.assert_array_equal(genie_tokens, [*prompts, our_tokens[0], 0])
    assert genie_audio.size > 20 * our_audio.size  # seconds of the reference against two tokens' worth
    assert_same_audio(our_audio, genie_vocoder(voice, reference, text, our_tokens, sides.prompt_encoder))


def voice_phonemes(voice, text: str):
    from engine.text.g2p import text_to_phonemes

    return text_to_phonemes(text, voice.language)
