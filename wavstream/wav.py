"""The header of a WAV stream whose length is unknown when it starts."""

from __future__ import annotations

import struct

UNKNOWN_SIZE = 0xFFFFFFFF


def streaming_wav_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM header with 0xFFFFFFFF as RIFF and data sizes.

    This is what OpenAI's streamed WAV and ffmpeg writing to a pipe do: `wave`, libsndfile,
    ffmpeg, SoX and browsers then read to the end of the stream. A size of 0 would make most of
    them read nothing.
    """
    block_align = channels * bits // 8
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", UNKNOWN_SIZE),
            b"WAVE",
            b"fmt ",
            struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, bits),
            b"data",
            struct.pack("<I", UNKNOWN_SIZE),
        ]
    )
