"""Ogg Opus and ADTS AAC streamed by FFmpeg's encoders and muxers through PyAV, segment by segment.

Why PyAV: libsndfile has no AAC encoder, and PyAV's wheels bundle FFmpeg with its native AAC encoder and
libopus, with no system libraries to install. Why not libsndfile for Opus: its Ogg writer closes a page only
when the page holds 1 s of audio (shorter only through a libsndfile command that soundfile does not expose, and
never under 50 ms), so a first segment of 0.7 s would not reach the client before the second segment. FFmpeg's
Ogg muxer, told to close a page per 20 ms packet, holds back one packet.

The muxer writes into an unseekable `ChunkSink`, as into a pipe: no muxer then tries to patch a header later,
and with `flush_packets` every packet reaches the sink at once, so `encode` returns all the codec let out.
"""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

import av
import numpy as np

from wavstream.codec_input import CodecEncoder


class ChunkSink:
    """A write-only, unseekable file: collects what the muxer writes until `take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class PyAVEncoder(CodecEncoder):
    """One FFmpeg encoder and muxer over a whole response: segments join inside the codec, without clicks.

    PyAV cuts the samples into the codec's frames and keeps the remainder for the next segment; `finish`
    encodes that remainder and the encoder's look-ahead, then writes the muxer's trailer.
    """

    _container_format = ""
    _codec = ""
    _bit_rate = 0
    _muxer_options: ClassVar[dict[str, str]] = {}

    def _open(self) -> None:
        self._sink = ChunkSink()
        self._container = av.open(
            self._sink,
            mode="w",
            format=self._container_format,
            container_options={"flush_packets": "1", **self._muxer_options},
        )
        self._stream = self._container.add_stream(self._codec, rate=self.sample_rate, layout="mono")
        self._stream.codec_context.bit_rate = self._bit_rate
        self._time_base = Fraction(1, self.sample_rate)
        self._pts = 0

    def start(self) -> bytes:
        self._container.start_encoding()  # the container's header, if it has one (Ogg: OpusHead, OpusTags)
        return self._sink.take()

    def encode(self, audio: np.ndarray) -> bytes:
        self._push(self._input.convert(audio))
        return self._sink.take()

    def finish(self) -> bytes:
        self._push(self._input.flush())
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._sink.take()

    def _push(self, samples: np.ndarray) -> None:
        if not samples.size:
            return
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.time_base, frame.pts = self.sample_rate, self._time_base, self._pts
        self._pts += samples.size
        self._container.mux(self._stream.encode(frame))


class OpusEncoder(PyAVEncoder):
    """Opus (libopus, 20 ms frames, 32 kbit/s VBR) in Ogg, at 48 kHz: Opus allows only 8/12/16/24/48 kHz.

    One Ogg page per packet (`page_duration`): the muxer keeps its last page until the next one (it may have
    to mark it as the end), so one 20 ms packet plus the unfinished frame is held back. The page headers cost
    about 11 kbit/s. The granule positions carry libopus's pre-skip and the final trim: decoders play exactly
    the input's length.
    """

    content_type = "audio/ogg"
    _container_format = "ogg"
    _codec = "libopus"
    _bit_rate = 32000
    _legal_rates = frozenset({48000})  # 48 kHz, the rate Opus decoders play at
    _muxer_options: ClassVar[dict[str, str]] = {"page_duration": "20000"}  # microseconds


class AacEncoder(PyAVEncoder):
    """AAC-LC (FFmpeg's native encoder, 64 kbit/s) in ADTS frames: headerless, so a client can decode any prefix.

    The encoder holds back up to two 1024-sample frames plus the unfinished one. ADTS cannot signal the
    encoder's 1024 priming samples or the final padding, so decoders play up to 2048 samples (64 ms at
    32 kHz) more than the input.
    """

    content_type = "audio/aac"
    _container_format = "adts"
    _codec = "aac"
    _bit_rate = 64000
    _legal_rates = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
