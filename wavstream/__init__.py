"""Streaming audio encoding: a header first, then audio chunk by chunk as segments finish."""

from wavstream.formats import FORMATS, OPENAI_FORMATS, PCM_RATE, AudioEncoder, Encoder, ResponseFormat
from wavstream.pcm import StreamResampler, float_to_pcm16
from wavstream.wav import streaming_wav_header

__all__ = [
    "FORMATS", "OPENAI_FORMATS", "PCM_RATE", "AudioEncoder", "Encoder", "ResponseFormat", "StreamResampler", "float_to_pcm16",
    "streaming_wav_header",
]
