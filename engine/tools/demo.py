"""A structurally real GPT-SoVITS V2ProPlus voice with random weights, built offline in seconds.

Why: real voices and GenieData cannot be downloaded in CI or on an offline laptop, yet every
test and benchmark must exercise the real Genie-TTS code path. The voice is made of the ONNX
graph templates shipped inside `genie-tts` plus random fp16 weights, so every session, shape
and operator is the real one; it just produces noise instead of speech.

Two changes make it behave like a trained voice:

* The EOS row of the T2S output projection is zeroed, so EOS never reaches the top-k and the
  voice never stops on its own by accident.
* **Length rule**: the stage decoder's stop condition is patched to also fire once the number
  of generated semantic tokens reaches ``TOKENS_PER_PHONEME`` (2) per phoneme of the segment's
  text. The graph derives the text's phoneme count from its input shapes: the KV cache covers
  ``ref_phonemes + text_phonemes + prompt_tokens + generated - 1`` positions and ``iy`` holds
  ``prompt_tokens + generated`` tokens, so with the reference's phoneme and prompt lengths baked
  in as constants (the builder computes them from the reference clip it wrote) the rule is exact.
  At 25 tokens/s this gives about 12 phonemes per second, close to real speech, so output
  length follows the text and every server run on this voice does real, comparable work.
  The constants belong to this voice's own reference; another reference clip would shift them.
  ``build_voice`` and ``ensure_demo`` take another rate (``tokens_per_phoneme``, e.g. 5 for a slow
  speaker) for tests of the token cap; ``tts_models/length_rule.json`` records the rate a voice was built with.

The stand-in GenieData holds a HuBERT-shaped model (same frame rate as chinese-hubert-base:
400-sample window, 320-sample hop at 16 kHz, 768 channels) and a speaker-encoder-shaped model
(16 kHz waveform to a 20480-wide embedding), and stand-ins for the Chinese and English G2P data
(engine/tools/g2p_data.py).

Besides ``demo`` (Japanese, with a second style ``calm``), ``demo-zh``, ``demo-en`` and ``demo-ko`` read a
Chinese, English and Korean reference transcript. They are the same random weights (hard links to demo's
files where the file system allows), each with the length rule worked out from its own reference.

Run ``python -m engine.tools.demo DIR`` to write ``DIR/demo*/`` and ``DIR/GenieData/``; ``--int8`` also writes
the int8 T2S decoders (engine/tools/quantize.py) for T2S_PRECISION=int8.
"""

from __future__ import annotations

import argparse
import json
import shutil
import stat
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from engine import genie
from engine.models import model_files as files
from engine.models.rates import SAMPLE_RATE
from engine.models.scratch import remove_abandoned, scratch_folder
from engine.tools.g2p_data import build_g2p_data
from engine.tools.quantize import int8_paths, quantize_voice
from engine.voices.demo_voices import (
    DEMO_VOICES,
    STAMP_FILE,
    TOKENS_PER_PHONEME,
    int8_built,
    stamp,
    stand_in_data_ready,
    voice_built,
)

EOS_TOKEN = 1024
REFERENCE_TEXT, REFERENCE_LANGUAGE = DEMO_VOICES["demo"]
REFERENCE_SECONDS = 5.0
REFERENCE_RATE = SAMPLE_RATE
DEMO_STYLE = "calm"
WEIGHT_SCALE = 0.02


# Templates a V2ProPlus voice is made of: (file in the voice folder, template, weight file, weight dtype).
def _templates() -> list[tuple[str, Path, str, type]]:
    v2, plus = genie.package_data_dir() / "v2/Models", genie.package_data_dir() / "v2ProPlus/Models"
    return [
        (files.T2S_ENCODER, v2 / files.T2S_ENCODER, files.T2S_ENCODER_WEIGHTS, np.float32),
        (files.FIRST_STAGE_DECODER, v2 / files.FIRST_STAGE_DECODER, files.T2S_WEIGHTS, np.float16),
        (files.STAGE_DECODER, v2 / files.STAGE_DECODER, files.T2S_WEIGHTS, np.float16),
        (files.VOCODER, plus / files.VOCODER, files.VOCODER_WEIGHTS, np.float16),
        (files.PROMPT_ENCODER, plus / files.PROMPT_ENCODER, files.PROMPT_ENCODER_WEIGHTS, np.float16),
    ]


def _external_ranges(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """Initializer name -> (offset, length) in fp32 bytes, as the templates record them."""
    ranges = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            ranges[tensor.name] = (int(info.get("offset", 0)), int(info["length"]))
    return ranges


def _write_weights(path: Path, fp32_bytes: int, dtype: type, rng: np.random.Generator, zero: list[tuple[int, int]]) -> None:
    count = fp32_bytes // 4
    weights = (rng.standard_normal(count, dtype=np.float32) * WEIGHT_SCALE).astype(dtype)
    for start, stop in zero:
        weights[start:stop] = 0
    weights.tofile(path)


def _reference_clip(seconds: float, rate: int, base_pitch: float = 180) -> np.ndarray:
    """A voiced, vowel-like signal: harmonics of a gliding pitch with a syllable envelope."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = base_pitch + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t) ** 2
    noise = np.random.default_rng(7).standard_normal(t.size) * 0.01
    signal = 0.25 * voice * envelope + noise
    return (signal / np.max(np.abs(signal)) * 0.6).astype(np.float32)


def build_genie_data(genie_data_dir: Path, seed: int = 0) -> None:
    """Write the stand-in HuBERT and speaker-encoder models Genie checks for at import, and the G2P data."""
    rng = np.random.default_rng(seed)
    (genie_data_dir / files.HUBERT).parent.mkdir(parents=True, exist_ok=True)

    kernel = rng.standard_normal((768, 1, 400), dtype=np.float32) * 0.05
    hubert = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["input_values", "axis1"], ["wave"]),
            helper.make_node("Conv", ["wave", "kernel"], ["frames"], strides=[320]),
            helper.make_node("Tanh", ["frames"], ["last_hidden_state"]),
        ],
        "hubert_standin",
        [helper.make_tensor_value_info("input_values", TensorProto.FLOAT, [1, "samples"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, 768, "frames"])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"), numpy_helper.from_array(kernel, "kernel")],
    )
    _save(hubert, genie_data_dir / files.HUBERT)

    filters = rng.standard_normal((64, 1, 400), dtype=np.float32) * 0.05
    projection = rng.standard_normal((64, 20480), dtype=np.float32) * 0.1
    speaker = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["waveform", "axis1"], ["wave"]),
            helper.make_node("Conv", ["wave", "filters"], ["bands"], strides=[160]),
            helper.make_node("Abs", ["bands"], ["energy"]),
            helper.make_node("ReduceMean", ["energy", "axis2"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "projection"], ["embedding_raw"]),
            helper.make_node("Tanh", ["embedding_raw"], ["embedding"]),
        ],
        "speaker_encoder_standin",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "samples"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 20480])],
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(filters, "filters"),
            numpy_helper.from_array(projection, "projection"),
        ],
    )
    _save(speaker, genie_data_dir / files.SPEAKER_ENCODER)
    build_g2p_data(genie_data_dir)


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _add_length_rule(
    model: onnx.ModelProto, ref_phonemes: int, prompt_tokens: int, tokens_per_phoneme: int = TOKENS_PER_PHONEME
) -> None:
    """Make `stop_condition_tensor` also fire once generated >= tokens_per_phoneme * text phonemes.

    past_len = ref_phonemes + text_phonemes + iy_len - 1 and generated = iy_len - prompt_tokens, hence
    text_phonemes = past_len - iy_len + 1 - ref_phonemes.
    """
    graph = model.graph
    original = next(node for node in graph.node if "stop_condition_tensor" in node.output)
    original.output[0] = "eos_stop_condition"

    def const(name: str, value: int) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array([value], dtype=np.int64), name)

    graph.initializer.extend(
        [
            const("lr_one", 1),
            const("lr_zero", 0),
            const("lr_ref_phonemes", ref_phonemes),
            const("lr_prompt_tokens", prompt_tokens),
            const("lr_tokens_per_phoneme", tokens_per_phoneme),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Shape", ["iy"], ["lr_iy_shape"]),
            helper.make_node("Gather", ["lr_iy_shape", "lr_one"], ["lr_iy_len"]),
            helper.make_node("Shape", ["past_k_layer_0"], ["lr_past_shape"]),
            helper.make_node("Gather", ["lr_past_shape", "lr_zero"], ["lr_past_len"]),
            helper.make_node("Sub", ["lr_past_len", "lr_iy_len"], ["lr_a"]),
            helper.make_node("Add", ["lr_a", "lr_one"], ["lr_b"]),
            helper.make_node("Sub", ["lr_b", "lr_ref_phonemes"], ["lr_text_phonemes"]),
            helper.make_node("Mul", ["lr_text_phonemes", "lr_tokens_per_phoneme"], ["lr_budget"]),
            helper.make_node("Sub", ["lr_iy_len", "lr_prompt_tokens"], ["lr_generated"]),
            helper.make_node("GreaterOrEqual", ["lr_generated", "lr_budget"], ["lr_reached_vec"]),
            helper.make_node("Squeeze", ["lr_reached_vec"], ["lr_reached"]),
            helper.make_node("Or", ["eos_stop_condition", "lr_reached"], ["stop_condition_tensor"]),
        ]
    )


def _reference_lengths(voice_dir: Path, genie_data_dir: Path, text: str, language: str) -> tuple[int, int]:
    """Phoneme count of the reference text (the server's own G2P) and semantic-token count of the reference clip."""
    if "genie_tts" not in sys.modules:
        genie.import_genie(genie_data_dir)
    from engine.text.g2p import text_to_phonemes  # noqa: PLC0415  (imports Genie's G2P: only after import_genie)

    phonemes = text_to_phonemes(text, language, prefix="")  # a code: the G2P takes codes and names
    phones, bert = phonemes.sequence, phonemes.bert
    audio_16k = genie.load_audio(voice_dir / "reference" / "audio.wav", 16000)
    hubert = onnxruntime.InferenceSession(str(genie_data_dir / files.HUBERT))
    ssl = hubert.run(None, {"input_values": audio_16k[None, :]})[0]
    encoder = onnxruntime.InferenceSession(str(voice_dir / "tts_models" / files.T2S_ENCODER))
    _, prompts = encoder.run(
        None, {"ref_seq": phones, "text_seq": phones, "ref_bert": bert, "text_bert": bert, "ssl_content": ssl}
    )
    return int(phones.shape[1]), int(prompts.shape[1])


def _write_reference(folder: Path, text: str, language: str, pitch: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    clip = _reference_clip(REFERENCE_SECONDS, REFERENCE_RATE, pitch)
    sf.write(folder / "audio.wav", clip, REFERENCE_RATE, subtype="PCM_16")
    (folder / "config.json").write_text(json.dumps({"text": text, "language": language}, ensure_ascii=False), encoding="utf-8")


def _write_length_rule(voice_dir: Path, genie_data_dir: Path, text: str, language: str, tokens_per_phoneme: int) -> None:
    """Patch the stage decoder in `voice_dir` (a plain copy of the template) with the rule for this reference."""
    models = voice_dir / "tts_models"
    ref_phonemes, prompt_tokens = _reference_lengths(voice_dir, genie_data_dir, text, language)
    stage = onnx.load(models / files.STAGE_DECODER, load_external_data=False)
    _add_length_rule(stage, ref_phonemes, prompt_tokens, tokens_per_phoneme)
    onnx.save(stage, models / files.STAGE_DECODER)
    (models / "length_rule.json").write_text(
        json.dumps({"tokens_per_phoneme": tokens_per_phoneme, "ref_phonemes": ref_phonemes, "prompt_tokens": prompt_tokens})
    )


def build_voice(voice_dir: Path, genie_data_dir: Path, seed: int = 0, tokens_per_phoneme: int = TOKENS_PER_PHONEME) -> None:
    """Write the V2ProPlus voice "demo" (tts_models/ and reference/) whose length rule stops at `tokens_per_phoneme`."""
    if tokens_per_phoneme < 1:
        raise ValueError(f"tokens_per_phoneme must be at least 1, not {tokens_per_phoneme}")
    rng = np.random.default_rng(seed)
    models = voice_dir / "tts_models"
    models.mkdir(parents=True, exist_ok=True)

    # The default clip, and a style "calm" (reference/calm/): a lower voice with the same transcript and
    # length, so the length rule below holds for both.
    for folder, pitch in ((voice_dir / "reference", 180), (voice_dir / "reference" / DEMO_STYLE, 130)):
        _write_reference(folder, REFERENCE_TEXT, REFERENCE_LANGUAGE, pitch)

    needed: dict[str, int] = {}
    dtypes: dict[str, type] = {}
    zero: dict[str, list[tuple[int, int]]] = {}
    templates = _templates()
    for _, template, weights, dtype in templates:
        model = onnx.load(template, load_external_data=False)
        ranges = _external_ranges(model)
        needed[weights] = max(needed.get(weights, 0), max(offset + length for offset, length in ranges.values()))
        dtypes[weights] = dtype
        if "ar_predict_layer.weight" in ranges:
            offset, length = ranges["ar_predict_layer.weight"]
            row = length // 4 // (EOS_TOKEN + 1)
            first = offset // 4 + EOS_TOKEN * row
            zero.setdefault(weights, []).append((first, first + row))
    for weights, fp32_bytes in needed.items():
        _write_weights(models / weights, fp32_bytes, dtypes[weights], rng, zero.get(weights, []))
    for name, template, _, _ in templates:
        shutil.copyfile(template, models / name)
    _write_length_rule(voice_dir, genie_data_dir, REFERENCE_TEXT, REFERENCE_LANGUAGE, tokens_per_phoneme)


def build_language_voice(
    voice_dir: Path, demo_dir: Path, genie_data_dir: Path, text: str, language: str, tokens_per_phoneme: int
) -> None:
    """A voice with demo's weights (hard-linked, else copied) and its own reference transcript in `language`."""
    models = voice_dir / "tts_models"
    models.mkdir(parents=True, exist_ok=True)
    own = {files.STAGE_DECODER, "length_rule.json", *(path.name for path in int8_paths(models))}
    for source in (demo_dir / "tts_models").iterdir():
        if source.is_file() and source.name not in own:
            try:
                (models / source.name).hardlink_to(source)
            except OSError:
                shutil.copyfile(source, models / source.name)
    stage_template = next(template for name, template, _, _ in _templates() if name == files.STAGE_DECODER)
    shutil.copyfile(stage_template, models / files.STAGE_DECODER)
    _write_reference(voice_dir / "reference", text, language, 180)
    _write_length_rule(voice_dir, genie_data_dir, text, language, tokens_per_phoneme)


def ensure_demo_voices(
    root: Path, names: Iterable[str] = DEMO_VOICES, tokens_per_phoneme: int = TOKENS_PER_PHONEME, int8: bool = False
) -> tuple[dict[str, Path], Path]:
    """Build (once) the named demo voices and stand-in GenieData under `root`; return ({name: voice_dir}, genie_data_dir).

    Each part is built in a scratch folder and renamed into place, so an interrupted or concurrent
    build never leaves a half-written voice behind (nor, after the next call, its scratch folder: engine/models/scratch.py).
    A voice with another `tokens_per_phoneme` has its own stamp, so a root is rebuilt when asked for a rate other
    than the one it holds. With `int8`, the int8 T2S decoders are added once (each file written whole, then renamed into place).
    """
    unknown = [name for name in names if name not in DEMO_VOICES]
    if unknown:
        raise ValueError(f"unknown demo voice {', '.join(unknown)}; the demo voices are {', '.join(DEMO_VOICES)}")
    genie_data_dir = root / "GenieData"
    root.mkdir(parents=True, exist_ok=True)
    remove_abandoned(root)  # scratch folders of a build killed midway
    if not stand_in_data_ready(genie_data_dir):
        with scratch_folder(root, "genie-data") as scratch:
            build_genie_data(scratch)
            _replace(scratch, genie_data_dir)
    wanted = ["demo", *(name for name in DEMO_VOICES if name != "demo" and name in names)]  # the others link to demo's
    voices = {}
    for name in wanted:
        voice_dir = voices[name] = root / name
        if not voice_built(voice_dir, tokens_per_phoneme):
            with scratch_folder(root, name) as scratch:
                text, language = DEMO_VOICES[name]
                if name == "demo":
                    build_voice(scratch, genie_data_dir, tokens_per_phoneme=tokens_per_phoneme)
                else:
                    build_language_voice(scratch, voices["demo"], genie_data_dir, text, language, tokens_per_phoneme)
                (scratch / STAMP_FILE).write_text(stamp(tokens_per_phoneme))
                _replace(scratch, voice_dir)
        if int8 and not int8_built(voice_dir):
            quantize_voice(voice_dir / "tts_models")
    return {name: path for name, path in voices.items() if name in names}, genie_data_dir


def ensure_demo(root: Path, tokens_per_phoneme: int = TOKENS_PER_PHONEME, int8: bool = False) -> tuple[Path, Path]:
    """The Japanese voice "demo" alone: (voice_dir, genie_data_dir), built once under `root`."""
    voices, genie_data_dir = ensure_demo_voices(root, ("demo",), tokens_per_phoneme, int8)
    return voices["demo"], genie_data_dir


_READ = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_EXECUTE = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def readable_by_all(folder: Path) -> None:
    """`chmod -R a+rX folder`: the scratch folder a build starts from is private (0700, from mkdtemp), and a finished
    demo voice or stand-in GenieData is ordinary data that a server running as another user (a container's) reads."""
    for path in (folder, *folder.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        executable = path.is_dir() or mode & _EXECUTE
        path.chmod(mode | _READ | (_EXECUTE if executable else 0))


def _replace(source: Path, target: Path) -> None:
    readable_by_all(source)
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        source.rename(target)
    except OSError:  # another process won the race; its copy is as good as ours
        shutil.rmtree(source, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the demo voices to DIR/demo*/ and stand-in GenieData to DIR/GenieData/.")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--voices", default=",".join(DEMO_VOICES), help="comma-separated demo voices (default: all)")
    parser.add_argument("--int8", action="store_true", help="also write int8 T2S decoders (for T2S_PRECISION=int8)")
    parser.add_argument(
        "--g2p-data", type=Path, help="GenieData whose G2P reads the reference transcripts (default: the stand-in)"
    )
    args = parser.parse_args(argv)
    if args.g2p_data:
        genie.import_genie(args.g2p_data)
    started = time.perf_counter()
    names = [name.strip() for name in args.voices.split(",") if name.strip()]
    voices, genie_data_dir = ensure_demo_voices(args.dir, names, int8=args.int8)
    for name, voice_dir in voices.items():
        print(f"demo voice {name}: {voice_dir}")
    print(f"stand-in GenieData: {genie_data_dir}\nbuilt in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
