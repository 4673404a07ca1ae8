"""What every compressed format's encoder is fed: the WAV stream's int16 samples, at a rate the codec allows;
and the construction both encoder families (sndfile_encoders, av_encoders) share."""

from __future__ import annotations

import numpy as np

from wavstream.pcm import StreamResampler, float_to_pcm16

#: The rate used when the model's rate is not one the codec allows (48 kHz is legal for all of them).
FALLBACK_RATE = 48000


def codec_rate(model_rate: int, legal: frozenset[int] | None) -> int:
    """The model's rate when the codec allows it (`None`: any rate), else 48 kHz: no resampling when avoidable."""
    return model_rate if legal is None or model_rate in legal else FALLBACK_RATE


class Pcm16Input:
    """Float audio at the model's rate to int16 samples at the codec's rate.

    Quantising with `float_to_pcm16` gives every format the same clipping and rounding as the WAV stream (a
    lossless format then decodes to exactly the WAV samples). The soxr stream resampler, when the codec needs
    another rate, keeps one continuous filter across segments, so joins do not click.
    """

    def __init__(self, model_rate: int, rate: int) -> None:
        self._resampler = StreamResampler(model_rate, rate) if rate != model_rate else None

    def convert(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            audio = self._resampler.process(audio)
        return np.frombuffer(float_to_pcm16(audio), dtype="<i2")

    def flush(self) -> np.ndarray:
        """The resampler's tail (nothing without a resampler)."""
        tail = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
        return np.frombuffer(float_to_pcm16(tail), dtype="<i2")


class CodecEncoder:
    """The construction both encoder families share: the codec's rate (`codec_rate` of the model's), the input
    converted to it (`Pcm16Input`), then the family's sink and codec writing into it (`_open`)."""

    content_type = ""
    _legal_rates: frozenset[int] | None = None  # None: any rate

    def __init__(self, model_rate: int) -> None:
        self.sample_rate = codec_rate(model_rate, self._legal_rates)
        self._input = Pcm16Input(model_rate, self.sample_rate)
        self._open()

    def _open(self) -> None:
        """Create `self._sink` and the codec that writes into it at `self.sample_rate`."""
        raise NotImplementedError
