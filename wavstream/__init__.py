"""Streaming audio encoding: a header first, then audio chunk by chunk as segments finish."""

from wavstream.formats import FORMATS, PCM_RATE, AudioEncoder, ResponseFormat
from wavstream.pcm import StreamResampler, float_to_pcm16
from wavstream.wav import streaming_wav_header

__all__ = ["FORMATS", "PCM_RATE", "AudioEncoder", "ResponseFormat", "StreamResampler", "float_to_pcm16", "streaming_wav_header"]
