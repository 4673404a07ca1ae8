"""Response formats: what each `response_format` sends, and with which Content-Type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wavstream.pcm import StreamResampler, float_to_pcm16
from wavstream.wav import streaming_wav_header

#: OpenAI documents `pcm` as 24 kHz; its SDK's player assumes that rate.
PCM_RATE = 24000
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class AudioEncoder:
    """Turns float audio at the model's rate into the bytes of one response, chunk by chunk."""

    content_type = "audio/wav"

    def __init__(self, model_rate: int) -> None:
        self.sample_rate = model_rate

    def start(self) -> bytes:
        return streaming_wav_header(self.sample_rate)

    def encode(self, audio: np.ndarray) -> bytes:
        return float_to_pcm16(audio)

    def finish(self) -> bytes:
        return b""


class PcmEncoder(AudioEncoder):
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


@dataclass(frozen=True)
class ResponseFormat:
    name: str
    encoder: type[AudioEncoder]

    def new_encoder(self, model_rate: int) -> AudioEncoder:
        return self.encoder(model_rate)


# mp3, opus, aac and flac are answered as streamed WAV (with WAV's Content-Type) until they are encoded.
FORMATS = {name: ResponseFormat(name, PcmEncoder if name == "pcm" else AudioEncoder) for name in OPENAI_FORMATS}
