"""WAV header, float-to-int16 conversion and streaming resampling."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import soundfile as sf

from wavstream.formats import ENCODERS
from wavstream.pcm import StreamResampler, float_to_pcm16
from wavstream.wav import streaming_wav_header


def test_streaming_header_fields() -> None:
    header = streaming_wav_header(32000)
    assert len(header) == 44
    riff, riff_size, wave_id, fmt, fmt_size = struct.unpack("<4sI4s4sI", header[:20])
    audio_format, channels, rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", header[20:36])
    data, data_size = struct.unpack("<4sI", header[36:44])
    assert (riff, wave_id, fmt, data) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert riff_size == data_size == 0xFFFFFFFF  # never 0: readers would see an empty file
    assert (fmt_size, audio_format, channels, rate, byte_rate, block_align, bits) == (16, 1, 1, 32000, 64000, 2, 16)


def test_header_plus_chunks_read_back_by_wave_and_soundfile() -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 32000).astype(np.float32) * 0.5
    stream = streaming_wav_header(32000) + float_to_pcm16(tone[:7000]) + float_to_pcm16(tone[7000:])
    data, rate = sf.read(io.BytesIO(stream), dtype="float32")
    assert rate == 32000 and data.shape == (16000,)
    assert np.max(np.abs(data - tone)) < 1e-4
    with wave.open(io.BytesIO(stream)) as reader:
        assert len(reader.readframes(10**9)) == 32000


def test_out_of_range_samples_are_clipped_not_wrapped() -> None:
    samples = np.frombuffer(float_to_pcm16(np.array([1.5, -1.7, 1.0, -1.0, 0.0, 0.5], dtype=np.float32)), dtype="<i2")
    assert samples.tolist() == [32767, -32767, 32767, -32767, 0, 16384]


def test_stream_resampler_matches_length_and_joins_chunks() -> None:
    resampler = StreamResampler(32000, 24000)
    tone = np.sin(2 * np.pi * 300 * np.arange(32000) / 32000).astype(np.float32)
    pieces = [resampler.process(tone[i : i + 5000]) for i in range(0, tone.size, 5000)]
    out = np.concatenate([*pieces, resampler.flush()])
    assert abs(out.size - 24000) <= 2
    reference = np.sin(2 * np.pi * 300 * np.arange(out.size) / 24000)
    assert np.max(np.abs(out[200:-200] - reference[200:-200])) < 0.01  # no glitches at the chunk joins


def test_formats_and_content_types() -> None:
    assert set(ENCODERS) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}
    wav = ENCODERS["wav"](32000)
    assert wav.content_type == "audio/wav" and wav.start()[:4] == b"RIFF" and wav.sample_rate == 32000
    pcm = ENCODERS["pcm"](32000)
    assert pcm.content_type == "audio/pcm" and pcm.start() == b"" and pcm.sample_rate == 24000
    assert ENCODERS["mp3"](32000).content_type == "audio/mpeg"  # the others: test_wavstream_formats.py
