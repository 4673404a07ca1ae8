"""mp3, opus, aac and flac: real streams checked by ffmpeg and ffprobe, segment by segment.

Every stream is what the server sends: start(), one encode() per segment, finish(), concatenated. Durations are
compared with the input's, allowing what each codec adds by design (see EXPECTED); the first segment's
bytes must decode on their own, which proves it is not held back until later segments.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from wavstream.formats import ENCODERS
from wavstream.pcm import float_to_pcm16
from wavstream.sndfile_encoders import StreamSink, blank_frame_length
from wavstream.wav import streaming_wav_header

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

MODEL_RATE = 32000
COMPRESSED = ("mp3", "opus", "aac", "flac")


@dataclass(frozen=True)
class Expected:
    content_type: str
    rate: int
    format_name: str  # ffprobe's container
    codec: str
    # Decoded length minus input length, at most, in samples at the stream's rate: the encoder delay and padding
    # that the stream cannot signal.
    extra_max_samples: int

    def extra_max_s(self, rate: int | None = None) -> float:
        return self.extra_max_samples / (rate or self.rate)


EXPECTED = {
    # LAME's delay (576 + 529 decoder samples) and padding under one 1152-sample frame: no Xing/LAME tag in a
    # stream. 70.5 ms at 32 kHz.
    "mp3": Expected("audio/mpeg", 32000, "mp3", "mp3", 1105 + 1152),
    # Ogg Opus signals its pre-skip and final trim: exact, give or take the resampler's rounding (1 ms).
    "opus": Expected("audio/ogg", 48000, "ogg", "opus", 48),
    # ADTS cannot signal the 1024 priming samples nor the padding of the last 1024-sample frame. 64 ms at 32 kHz.
    "aac": Expected("audio/aac", 32000, "aac", "aac", 2048),
    "flac": Expected("audio/flac", 32000, "flac", "flac", 0),
}
FIRST_SEGMENT_SHARE = 0.9  # the first segment's bytes alone decode to at least this share of it


def tone(seconds: float, hz: float, level: float = 0.5) -> np.ndarray:
    """A sine with 10 ms fades, like one synthesised sentence."""
    n = round(seconds * MODEL_RATE)
    wave = level * np.sin(2 * np.pi * hz * np.arange(n) / MODEL_RATE)
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * MODEL_RATE))
    return (wave * fade).astype(np.float32)


SEGMENTS = (tone(1.0, 300), tone(1.3, 450), tone(1.9, 600))
SEGMENT_HZ = (300, 450, 600)


def encode_stream(name: str, segments: tuple[np.ndarray, ...] = SEGMENTS) -> list[bytes]:
    encoder = ENCODERS[name](MODEL_RATE)
    return [encoder.start(), *(encoder.encode(segment) for segment in segments), encoder.finish()]


def ffmpeg_decode(data: bytes, check: bool = True) -> np.ndarray:
    """Mono int16 at the stream's own rate."""
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "pipe:1"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if check:
        assert result.returncode == 0 and not result.stderr, result.stderr.decode()
    return np.frombuffer(result.stdout, dtype="<i2")


def ffprobe(data: bytes) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", "pipe:0"],
        input=data,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert not result.stderr, result.stderr.decode()
    return json.loads(result.stdout)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum)) * rate / samples.size


@pytest.fixture(scope="module", params=COMPRESSED)
def stream(request: pytest.FixtureRequest) -> tuple[str, list[bytes]]:
    return request.param, encode_stream(request.param)


def test_content_types_and_rates() -> None:
    for name in COMPRESSED:
        encoder = ENCODERS[name](MODEL_RATE)
        assert (encoder.content_type, encoder.sample_rate) == (EXPECTED[name].content_type, EXPECTED[name].rate)
    assert ENCODERS["wav"](MODEL_RATE).content_type == "audio/wav"
    assert ENCODERS["pcm"](MODEL_RATE).content_type == "audio/pcm"


def test_container_codec_and_duration(stream: tuple[str, list[bytes]]) -> None:
    name, chunks = stream
    expected = EXPECTED[name]
    data = b"".join(chunks)
    info = ffprobe(data)
    (audio,) = info["streams"]
    assert info["format"]["format_name"] == expected.format_name
    assert (audio["codec_name"], int(audio["sample_rate"]), audio["channels"]) == (expected.codec, expected.rate, 1)
    decoded = ffmpeg_decode(data)
    extra = decoded.size / expected.rate - sum(s.size for s in SEGMENTS) / MODEL_RATE
    assert -0.001 <= extra <= expected.extra_max_s() + 1e-9, f"{name}: {extra * 1000:.1f} ms more than the input"


def test_each_segment_sounds_like_its_input(stream: tuple[str, list[bytes]]) -> None:
    """Rough waveform check (FLAC's exact one is below): each segment's pitch and level survive."""
    name, chunks = stream
    rate = EXPECTED[name].rate
    decoded = ffmpeg_decode(b"".join(chunks)).astype(np.float64) / 32767
    start = 0.0
    for segment, hz in zip(SEGMENTS, SEGMENT_HZ, strict=True):
        seconds = segment.size / MODEL_RATE
        # the middle of the segment, clear of fades and of the codec's delay (at most 71 ms)
        window = decoded[round((start + 0.15) * rate) : round((start + seconds - 0.15) * rate)]
        assert abs(dominant_hz(window, rate) - hz) < 5
        assert abs(np.sqrt(np.mean(window**2)) - 0.5 / np.sqrt(2)) < 0.05  # a 0.5 sine's RMS, within 1.5 dB
        start += seconds


def test_first_segment_is_not_held_back(stream: tuple[str, list[bytes]]) -> None:
    name, chunks = stream
    rate = EXPECTED[name].rate
    first = chunks[0] + chunks[1]
    assert all(chunks[1:4]), "every segment sends bytes"
    decoded = ffmpeg_decode(first, check=False)  # a cut Ogg stream ends with an "End of file" message
    first_seconds = SEGMENTS[0].size / MODEL_RATE
    assert decoded.size / rate >= FIRST_SEGMENT_SHARE * first_seconds, f"{name}: {decoded.size / rate:.3f} s of {first_seconds} s"


def test_every_segment_is_sent_by_its_encode(stream: tuple[str, list[bytes]]) -> None:
    """After each encode() the stream so far decodes to the audio so far, short of what the codec holds back
    (at most about 100 ms: a frame or two, the resampler's delay) plus the priming it adds (counted in)."""
    name, chunks = stream
    rate = EXPECTED[name].rate
    sent_seconds = 0.0
    for count, segment in enumerate(SEGMENTS, start=2):
        sent_seconds += segment.size / MODEL_RATE
        decoded = ffmpeg_decode(b"".join(chunks[:count]), check=False)
        assert decoded.size / rate >= sent_seconds - 0.1, f"{name}: after segment {count - 1}"


def test_segment_joins_are_seamless(stream: tuple[str, list[bytes]]) -> None:
    """Encoding segment by segment decodes to the same samples as encoding all the audio at once: no gaps,
    no clicks and no restarts at the joins (the codec sees one continuous stream)."""
    name, chunks = stream
    whole = encode_stream(name, (np.concatenate(SEGMENTS),))
    assert np.array_equal(ffmpeg_decode(b"".join(chunks)), ffmpeg_decode(b"".join(whole)))


def test_flac_is_lossless_and_clips_like_wav() -> None:
    loud = tone(0.5, 440, level=1.4)  # beyond full scale: clipped, not wrapped
    segments = (SEGMENTS[0], loud, SEGMENTS[1])
    decoded = ffmpeg_decode(b"".join(encode_stream("flac", segments)))
    expected = np.frombuffer(b"".join(float_to_pcm16(s) for s in segments), dtype="<i2")
    assert np.array_equal(decoded, expected)


@pytest.mark.parametrize("name", COMPRESSED)
def test_silence_short_and_empty_segments(name: str) -> None:
    segments = (
        np.zeros(0, np.float32),
        np.zeros(MODEL_RATE // 2, np.float32),  # 0.5 s of digital silence
        tone(0.02, 500),  # 20 ms, less than a frame of any of these codecs
        np.zeros(0, np.float32),
        tone(0.7, 300),
    )
    data = b"".join(encode_stream(name, segments))
    decoded = ffmpeg_decode(data)
    expected = EXPECTED[name]
    extra = decoded.size / expected.rate - sum(s.size for s in segments) / MODEL_RATE
    assert -0.001 <= extra <= expected.extra_max_s() + 1e-9


@pytest.mark.parametrize("model_rate", [24000, 48000])
@pytest.mark.parametrize("name", COMPRESSED)
def test_other_model_rates(name: str, model_rate: int) -> None:
    """A codec that cannot take the model's rate gets 48 kHz (MP3 here is MPEG-1: 32, 44.1 or 48 kHz)."""
    encoder = ENCODERS[name](model_rate)
    rate = {"mp3": 48000, "opus": 48000}.get(name, model_rate)
    assert encoder.sample_rate == rate
    seconds = 1.234
    audio = (0.5 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * model_rate)) / model_rate)).astype(np.float32)
    half = audio.size // 2
    data = encoder.start() + encoder.encode(audio[:half]) + encoder.encode(audio[half:]) + encoder.finish()
    assert int(ffprobe(data)["streams"][0]["sample_rate"]) == rate
    decoded = ffmpeg_decode(data)
    extra = decoded.size / rate - seconds
    assert -0.001 <= extra <= EXPECTED[name].extra_max_s(rate) + 1e-9
    assert abs(dominant_hz(decoded[rate // 10 : -rate // 10].astype(np.float64), rate) - 440) < 5


def ogg_pages(data: bytes) -> list[tuple[int, int, bytes]]:
    """Each Ogg page's (header type flags, granule position, body); the pages must fill `data` exactly."""
    pages, offset = [], 0
    while offset < len(data):
        assert data[offset : offset + 5] == b"OggS\x00", f"no Ogg page at byte {offset}"
        flags, granule, count = data[offset + 5], int.from_bytes(data[offset + 6 : offset + 14], "little"), data[offset + 26]
        start = offset + 27 + count
        end = start + sum(data[offset + 27 : start])
        assert end <= len(data), "a cut Ogg page"
        pages.append((flags, granule, data[start:end]))
        offset = end
    return pages


@pytest.mark.parametrize("name", [*COMPRESSED, "wav", "pcm"])
def test_finish_without_audio(name: str) -> None:
    """What start() and finish() send when no audio came between them: each format's stream of no audio."""
    encoder = ENCODERS[name](MODEL_RATE)
    data = encoder.start() + encoder.finish()
    if name in ("mp3", "aac", "pcm"):
        # Frames without a file header (MP3, ADTS) or raw samples: no audio is no bytes, not even a priming frame.
        assert data == b""
    elif name == "flac":
        # libsndfile writes "fLaC" and STREAMINFO with the first samples, so there is no FLAC header either: the
        # body is empty (not a FLAC file; pinned so that a change to it is deliberate).
        assert data == b""
    elif name == "wav":
        # The streaming header alone, which readers take as 0 frames at the stream's rate.
        assert data == streaming_wav_header(MODEL_RATE)
        with wave.open(io.BytesIO(data)) as reader:
            assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (MODEL_RATE, 1, 2)
            assert reader.readframes(1) == b""
        samples, rate = sf.read(io.BytesIO(data), dtype="int16")
        assert (samples.size, rate) == (0, MODEL_RATE)
    else:
        # Ogg Opus: the identification and comment headers, no audio page, granule 0 throughout, nothing decodes.
        # (No page carries the end-of-stream flag: with no packet, FFmpeg's Ogg muxer writes no last page.)
        pages = ogg_pages(data)
        assert [body[:8] for _, _, body in pages] == [b"OpusHead", b"OpusTags"]
        assert pages[0][0] & 0x02 and not pages[1][0] & 0x02  # the first page, and only it, begins the stream
        assert all(granule == 0 for _, granule, _ in pages)
        head = pages[0][2]
        assert (head[8], head[9], int.from_bytes(head[12:16], "little")) == (1, 1, EXPECTED["opus"].rate)  # version, mono
        assert ffmpeg_decode(data, check=False).size == 0


def test_flac_streaminfo_says_unknown_length() -> None:
    """libsndfile's STREAMINFO rewrite at close is dropped; the one sent first says "unknown" (0)."""
    encoder = ENCODERS["flac"](MODEL_RATE)
    data = encoder.start() + encoder.encode(SEGMENTS[0]) + encoder.finish()
    assert encoder._sink.dropped_rewrite_bytes > 0  # frame sizes, total samples, MD5
    assert data[:4] == b"fLaC"
    streaminfo = data[8:42]
    total_samples = int.from_bytes(streaminfo[13:18], "big") & (2**36 - 1)
    assert total_samples == 0 and streaminfo[18:34] == bytes(16)  # unknown length, no MD5
    assert "duration" not in ffprobe(data)["format"]


def test_mp3_starts_with_audio_not_a_blank_tag_frame() -> None:
    """LAME's blank first frame is left out, and libsndfile's Xing/LAME tag written over it at close dropped."""
    encoder = ENCODERS["mp3"](MODEL_RATE)
    data = encoder.start() + encoder.encode(SEGMENTS[0]) + encoder.finish()
    assert encoder._sink.dropped_rewrite_bytes == 288  # the tag frame: 64 kbit/s at 32 kHz
    assert blank_frame_length(data) == 0
    assert data[:2] == b"\xff\xfb"  # an MPEG-1 Layer III frame
    assert blank_frame_length(b"\xff\xfb\x58\xc4" + bytes(284)) == 288  # LAME's placeholder at 32 kHz
    assert blank_frame_length(b"\xff\xfb") is None


def test_sink_hands_out_new_bytes_and_drops_rewrites_of_sent_ones() -> None:
    sink = StreamSink()
    sink.write(b"header")
    assert sink.take() == b"header"
    sink.write(b"abc")
    sink.seek(2)
    sink.write(b"HEADxx")  # bytes 2-5 were sent; 6-7 overwrite the unsent "ab"
    assert sink.dropped_rewrite_bytes == 4
    sink.seek(0, 2)
    sink.write(b"!")
    assert sink.take() == b"xxc!"
    assert sink.tell() == 10
