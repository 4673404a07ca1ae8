"""A voice loaded for serving: its ONNX sessions and its reference features, computed once.

We load sessions ourselves instead of through Genie's `model_manager`, whose LRU would evict
(and slowly reload) voices beyond `Max_Cached_Character_Models`, and we compute reference
features once instead of through Genie's `ReferenceAudio` cache, which mutates lazily.
The models that only compute reference features (HuBERT, the speaker encoder, the voice's prompt
encoder) are loaded only when a feature is not cached yet, and dropped once the voice is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
import soxr

from engine import genie
from engine.models import model_files
from engine.models.decoder_graph import load_stage_decoder
from engine.models.rates import HUBERT_RATE, SAMPLE_RATE
from engine.models.sessions import SessionLoader, WeightPool
from engine.models.t2s_precision import decoder_files
from engine.text.g2p import text_to_phonemes
from engine.text.languages import NAMES
from engine.voices.reference_cache import ReferenceCache
from engine.voices.voice_folder import ReferenceClip, VoiceFolder

logger = logging.getLogger("gsv.voices")


class GenieDataBroken(RuntimeError):
    """A GenieData model (HuBERT, the speaker encoder) does not load: every voice needs it, so nothing can be served."""


class SharedModels:
    """GenieData models every voice uses to compute its reference features, loaded on first use.

    A warm start (every feature cached) never loads them; `release` drops them once the voices are loaded.
    """

    def __init__(self, genie_data_dir: Path, threads: int, loader: SessionLoader | None = None) -> None:
        self.hubert_files = (genie_data_dir / model_files.HUBERT, genie_data_dir / model_files.HUBERT_WEIGHTS)
        self.speaker_encoder_file = genie_data_dir / model_files.SPEAKER_ENCODER
        self._loader = loader or SessionLoader(threads, None)
        self._hubert: onnxruntime.InferenceSession | None = None
        self._speaker_encoder: onnxruntime.InferenceSession | None = None
        self.loads = 0  # how many times the models were loaded (tests: a warm start loads none)

    @classmethod
    def load(cls, genie_data_dir: Path, threads: int, loader: SessionLoader | None = None) -> SharedModels:
        return cls(genie_data_dir, threads, loader)

    @property
    def files(self) -> list[Path]:
        """The files whose content the features depend on (part of the reference cache's key)."""
        return [path for path in (*self.hubert_files, self.speaker_encoder_file) if path.exists()]

    def _ensure(self) -> None:
        if self._hubert is None or self._speaker_encoder is None:
            logger.info("loading HuBERT and the speaker encoder for reference features")
            self._hubert = self._session(*self.hubert_files)
            self._speaker_encoder = self._session(self.speaker_encoder_file, None)
            self.loads += 1

    def _session(self, graph: Path, fp16_weights: Path | None) -> onnxruntime.InferenceSession:
        """A GenieData session; failing, an error naming the file (protobuf's own message names none)."""
        try:
            return self._loader.session(graph, fp16_weights)
        except Exception as error:  # onnxruntime, onnx and protobuf raise many types for a damaged file
            raise GenieDataBroken(f"GenieData model {graph} does not load ({type(error).__name__}: {error})") from error

    @property
    def hubert(self) -> onnxruntime.InferenceSession:
        self._ensure()
        assert self._hubert is not None
        return self._hubert

    @property
    def speaker_encoder(self) -> onnxruntime.InferenceSession:
        self._ensure()
        assert self._speaker_encoder is not None
        return self._speaker_encoder

    @property
    def loaded(self) -> bool:
        return self._hubert is not None

    def release(self) -> None:
        self._hubert = self._speaker_encoder = None


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
    reference: Reference
    styles: dict[str, Reference] = field(default_factory=dict)
    weights: WeightPool | None = None  # the decoders' shared weights: must live as long as they do

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


def load_voice(
    folder: VoiceFolder,
    shared: SharedModels,
    threads: int,
    *,
    loader: SessionLoader | None = None,
    references: ReferenceCache | None = None,
    t2s_precision: str = "fp32",
) -> Voice:
    """Load sessions and reference features: through the caches in a few seconds, about 15-20 s on 2 cores without."""
    loader = loader or SessionLoader(threads, None)
    models = folder.models
    # T2S_PRECISION (engine/models/t2s_precision.py): fp32 templates + fp16 weights, or self-contained int8 graphs.
    first_graph, stage_graph, t2s_weights = decoder_files(models, t2s_precision)
    pool = WeightPool() if loader.cache is not None and t2s_weights is not None else None
    encoder = loader.session(models / model_files.T2S_ENCODER, None)
    first = loader.session(first_graph, t2s_weights, pool)
    stage = load_stage_decoder(stage_graph, lambda graph: loader.session(graph, t2s_weights, pool))
    vocoder = loader.session(models / model_files.VOCODER, models / model_files.VOCODER_WEIGHTS)
    features = ReferenceFeatures(folder, shared, loader, references)
    reference = features.of(folder.reference)
    styles = {name: features.of(clip) for name, clip in folder.styles.items()}
    return Voice(folder, encoder, first, stage, vocoder, reference, styles, pool)


class ReferenceFeatures:
    """One voice's reference features: from the cache, or computed (loading the prompt encoder only then)."""

    def __init__(self, folder: VoiceFolder, shared: SharedModels, loader: SessionLoader, cache: ReferenceCache | None) -> None:
        self.folder = folder
        self.shared = shared
        self.loader = loader
        self.cache = cache
        self.prompt_files = tuple(folder.models / name for name in model_files.PROMPT_ENCODER_FILES)
        self._prompt_encoder: onnxruntime.InferenceSession | None = None

    def of(self, clip: ReferenceClip) -> Reference:
        key = None
        if self.cache is not None:
            speaker_files = list(self.prompt_files) if self.folder.kind == "V2ProPlus" else []
            language = NAMES[clip.language]  # keyed by Genie's name, as entries written before were
            key = self.cache.key(clip.audio, clip.text, language, [*self.shared.files, *speaker_files])
            stored = self.cache.load(key)
            if stored is not None:
                return Reference(**{name: stored.get(name) for name in Reference.__dataclass_fields__})  # type: ignore[arg-type]
        reference = compute_reference(clip, self.shared, self._prompt())
        if self.cache is not None and key is not None:
            self.cache.store(key, {name: getattr(reference, name) for name in Reference.__dataclass_fields__})
        return reference

    def _prompt(self) -> onnxruntime.InferenceSession | None:
        if self.folder.kind != "V2ProPlus":
            return None
        if self._prompt_encoder is None:
            logger.info("voice=%s loading its prompt encoder for reference features", self.folder.name)
            self._prompt_encoder = self.loader.session(*self.prompt_files)
        return self._prompt_encoder


def compute_reference(
    clip: ReferenceClip, shared: SharedModels, prompt_encoder: onnxruntime.InferenceSession | None
) -> Reference:
    """Features of one reference clip, computed once at start-up so requests never pay for them."""
    # Genie's loader: mono, soxr resampling, 0.3 s of silence appended (the models were trained that way).
    audio_32k = genie.load_audio(clip.audio, SAMPLE_RATE)
    if audio_32k is None:
        raise ValueError(f"cannot read {clip.audio}")
    audio_16k = soxr.resample(audio_32k, SAMPLE_RATE, HUBERT_RATE, quality="hq")[None, :].astype(np.float32)
    audio_32k = audio_32k[None, :].astype(np.float32)
    ssl = shared.hubert.run(None, {"input_values": audio_16k})[0]
    phonemes = text_to_phonemes(clip.text, clip.language, prefix="")
    ge = ge_advanced = None
    if prompt_encoder is not None:
        speaker = shared.speaker_encoder.run(None, {"waveform": audio_16k})[0]
        ge, ge_advanced = prompt_encoder.run(None, {"ref_audio": audio_32k, "sv_emb": speaker})
    return Reference(phonemes.sequence, phonemes.bert, ssl, audio_32k, ge, ge_advanced)
