"""Response formats: what each `response_format` sends, and with which Content-Type.

| format | Content-Type | stream                          | rate (model at 32 kHz) | encoder              |
| ------ | ------------ | ------------------------------- | ---------------------- | -------------------- |
| wav    | audio/wav    | 16-bit PCM, sizes 0xFFFFFFFF    | 32 kHz                 | here                 |
| pcm    | audio/pcm    | raw 16-bit little-endian        | 24 kHz (OpenAI's)      | here                 |
| mp3    | audio/mpeg   | MPEG-1 Layer III, CBR 64 kbit/s | 32 kHz                 | libsndfile (LAME)    |
| flac   | audio/flac   | FLAC, 16-bit                    | 32 kHz                 | libsndfile (libFLAC) |
| opus   | audio/ogg    | Opus, 32 kbit/s, in Ogg         | 48 kHz (Opus's rates)  | PyAV (libopus, Ogg)  |
| aac    | audio/aac    | AAC-LC, 64 kbit/s, in ADTS      | 32 kHz                 | PyAV (FFmpeg's AAC)  |

Every encoder is one stream over the whole response: `start` before any audio, `encode` per segment with the
bytes the codec let out for it, `finish` with the rest.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from wavstream.av_encoders import AacEncoder, OpusEncoder
from wavstream.pcm import StreamResampler, float_to_pcm16
from wavstream.sndfile_encoders import FlacEncoder, Mp3Encoder
from wavstream.wav import streaming_wav_header

#: OpenAI documents `pcm` as 24 kHz; its SDK's player assumes that rate.
PCM_RATE = 24000


class Encoder(Protocol):
    """What the server uses of an encoder."""

    content_type: str
    sample_rate: int

    def start(self) -> bytes: ...

    def encode(self, audio: np.ndarray) -> bytes: ...

    def finish(self) -> bytes: ...


class WavEncoder:
    """Streamed WAV: the header first, then each segment as 16-bit PCM at the model's rate."""

    content_type = "audio/wav"

    def __init__(self, model_rate: int) -> None:
        self.sample_rate = model_rate

    def start(self) -> bytes:
        return streaming_wav_header(self.sample_rate)

    def encode(self, audio: np.ndarray) -> bytes:
        return float_to_pcm16(audio)

    def finish(self) -> bytes:
        return b""


class PcmEncoder:
    """Raw 16-bit little-endian mono at 24 kHz, no header."""

    content_type = "audio/pcm"

    def __init__(self, model_rate: int) -> None:
        self.sample_rate = PCM_RATE
        self._resampler = StreamResampler(model_rate, PCM_RATE)

    def start(self) -> bytes:
        return b""

    def encode(self, audio: np.ndarray) -> bytes:
        return float_to_pcm16(self._resampler.process(audio))

    def finish(self) -> bytes:
        return float_to_pcm16(self._resampler.flush())


#: `response_format` -> its encoder class, constructed with the model's sample rate.
ENCODERS: dict[str, type[Encoder]] = {
    "mp3": Mp3Encoder,
    "opus": OpusEncoder,
    "aac": AacEncoder,
    "flac": FlacEncoder,
    "wav": WavEncoder,
    "pcm": PcmEncoder,
}
OPENAI_FORMATS = tuple(ENCODERS)
