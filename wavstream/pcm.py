"""Float audio to 16-bit PCM, and streaming sample-rate conversion."""

from __future__ import annotations

import numpy as np
import soxr


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """Little-endian int16 bytes; samples beyond [-1, 1] are clipped (a plain cast would wrap around)."""
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


class StreamResampler:
    """soxr's streaming resampler: chunks join without edge artefacts, `flush` emits the tail."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def process(self, audio: np.ndarray) -> np.ndarray:
        return self._stream.resample_chunk(np.asarray(audio, dtype=np.float32))

    def flush(self) -> np.ndarray:
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
