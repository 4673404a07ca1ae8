"""A voice loaded for serving: its ONNX sessions and its reference features, computed once.

We load sessions ourselves instead of through Genie's `model_manager`, whose LRU would evict
(and slowly reload) voices beyond `Max_Cached_Character_Models`, and we compute reference
features once instead of through Genie's `ReferenceAudio` cache, which mutates lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
import soxr

from engine import genie
from engine.decoder_graph import load_stage_decoder
from engine.g2p import text_to_phonemes
from engine.voice_folder import ReferenceClip, VoiceFolder

PROVIDERS = ["CPUExecutionProvider"]


def session_options(threads: int) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Several workers share the cores: spinning threads would steal them from each other.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_session(model: Path, fp16_weights: Path | None, threads: int) -> onnxruntime.InferenceSession:
    """Load a Genie template graph, expanding its fp16 weight file to fp32 in memory when there is one."""
    if fp16_weights is not None and fp16_weights.exists():
        return genie.load_fp16_session(model, fp16_weights, PROVIDERS, session_options(threads))
    return onnxruntime.InferenceSession(str(model), session_options(threads), providers=PROVIDERS)


@dataclass(frozen=True)
class SharedModels:
    """GenieData models every voice uses to compute its reference features."""

    hubert: onnxruntime.InferenceSession
    speaker_encoder: onnxruntime.InferenceSession

    @classmethod
    def load(cls, genie_data_dir: Path, threads: int) -> SharedModels:
        hubert_dir = genie_data_dir / "chinese-hubert-base"
        return cls(
            hubert=load_session(
                hubert_dir / "chinese-hubert-base.onnx", hubert_dir / "chinese-hubert-base_weights_fp16.bin", threads
            ),
            speaker_encoder=load_session(genie_data_dir / "speaker_encoder.onnx", None, threads),
        )


@dataclass(frozen=True)
class Reference:
    """Everything the model needs from the reference clip and its transcript."""

    phonemes: np.ndarray  # int64 [1, n]
    bert: np.ndarray  # float32 [n, 1024]
    ssl: np.ndarray  # float32 [1, 768, frames]
    audio_32k: np.ndarray  # float32 [1, samples] (V2 vocoder input)
    ge: np.ndarray | None  # V2ProPlus speaker conditioning
    ge_advanced: np.ndarray | None


@dataclass(frozen=True)
class Voice:
    folder: VoiceFolder
    encoder: onnxruntime.InferenceSession
    first_stage_decoder: onnxruntime.InferenceSession
    stage_decoder: onnxruntime.InferenceSession
    vocoder: onnxruntime.InferenceSession
    prompt_encoder: onnxruntime.InferenceSession | None
    reference: Reference
    styles: dict[str, Reference] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.folder.name

    def style(self, name: str) -> str | None:
        """The exact name of one of this voice's styles, matched case-insensitively."""
        folded = name.casefold()
        return next((style for style in self.styles if style.casefold() == folded), None)

    def reference_for(self, style: str | None) -> Reference:
        return self.styles[style] if style is not None else self.reference

    @property
    def language(self) -> str:
        return self.folder.language


def load_voice(folder: VoiceFolder, shared: SharedModels, threads: int) -> Voice:
    """Load sessions and compute reference features (about 15-20 s per voice on 2 cores)."""
    models = folder.models
    shared_t2s = models / "t2s_shared_fp16.bin"
    encoder = load_session(models / "t2s_encoder_fp32.onnx", None, threads)
    first = load_session(models / "t2s_first_stage_decoder_fp32.onnx", shared_t2s, threads)
    stage = load_stage_decoder(models / "t2s_stage_decoder_fp32.onnx", lambda graph: load_session(graph, shared_t2s, threads))
    vocoder = load_session(models / "vits_fp32.onnx", models / "vits_fp16.bin", threads)
    prompt_encoder = None
    if folder.kind == "V2ProPlus":
        prompt_encoder = load_session(models / "prompt_encoder_fp32.onnx", models / "prompt_encoder_fp16.bin", threads)

    reference = compute_reference(folder.reference, shared, prompt_encoder)
    styles = {name: compute_reference(clip, shared, prompt_encoder) for name, clip in folder.styles.items()}
    return Voice(folder, encoder, first, stage, vocoder, prompt_encoder, reference, styles)


def compute_reference(
    clip: ReferenceClip, shared: SharedModels, prompt_encoder: onnxruntime.InferenceSession | None
) -> Reference:
    """Features of one reference clip, computed once at start-up so requests never pay for them."""
    # Genie's loader: mono, soxr resampling, 0.3 s of silence appended (the models were trained that way).
    audio_32k = genie.load_audio(clip.audio, 32000)
    if audio_32k is None:
        raise ValueError(f"cannot read {clip.audio}")
    audio_16k = soxr.resample(audio_32k, 32000, 16000, quality="hq")[None, :].astype(np.float32)
    audio_32k = audio_32k[None, :].astype(np.float32)
    ssl = shared.hubert.run(None, {"input_values": audio_16k})[0]
    phonemes = text_to_phonemes(clip.text, clip.language, prefix="")
    ge = ge_advanced = None
    if prompt_encoder is not None:
        speaker = shared.speaker_encoder.run(None, {"waveform": audio_16k})[0]
        ge, ge_advanced = prompt_encoder.run(None, {"ref_audio": audio_32k, "sv_emb": speaker})
    return Reference(phonemes.sequence, phonemes.bert, ssl, audio_32k, ge, ge_advanced)
