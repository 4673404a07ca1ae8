"""MP3 and FLAC streamed by libsndfile (through soundfile, already a dependency), segment by segment.

libsndfile writes into a file object. `StreamSink` is that file: each `encode` hands out the bytes libsndfile
wrote for its segment. libsndfile passes each write to the codec at once and writes what the codec returns, so
only what the codec itself needs is held back: a FLAC block (1152 samples here), LAME's frame and look-ahead.

When it closes, libsndfile seeks back to fill in headers that sum up the whole file. Those bytes have already
been sent, so `StreamSink` drops such rewrites; each encoder below says why its stream is valid without them.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from wavstream.codec_input import CodecEncoder


class StreamSink:
    """A seekable file for libsndfile that keeps only bytes not yet handed out by `take`.

    A write below the sent mark (a header patched at close) is dropped and counted in `dropped_rewrite_bytes`.
    """

    def __init__(self) -> None:
        self._sent = 0  # bytes handed out so far; the stream offset of _pending[0]
        self._pending = bytearray()
        self._pos = 0
        self.dropped_rewrite_bytes = 0

    def write(self, data: bytes) -> int:
        data = bytes(data)
        size = len(data)
        start, end = self._pos, self._pos + size
        if start < self._sent:
            self.dropped_rewrite_bytes += min(end, self._sent) - start
            data, start = data[self._sent - start :], self._sent
        if data:
            offset = start - self._sent
            if offset > len(self._pending):
                self._pending.extend(bytes(offset - len(self._pending)))
            self._pending[offset : offset + len(data)] = data
        self._pos = end
        return size

    def read(self, size: int = -1) -> bytes:
        """Bytes not yet sent (libsndfile does not read back while it encodes these formats)."""
        offset = max(self._pos - self._sent, 0)
        data = bytes(self._pending[offset : None if size < 0 else offset + size])
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._sent + len(self._pending)}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        """The bytes written since the last `take`; from now on they can no longer change."""
        data = bytes(self._pending)
        self._sent += len(data)
        self._pending.clear()
        return data


class SoundfileEncoder(CodecEncoder):
    """One libsndfile stream over a whole response: segments join inside the codec, without gaps or clicks."""

    _format = ""
    _subtype = ""

    def _open(self) -> None:
        self._sink = StreamSink()
        self._file = sf.SoundFile(
            self._sink,
            mode="w",
            samplerate=self.sample_rate,
            channels=1,
            format=self._format,
            subtype=self._subtype,
            **self._settings(),
        )

    def _settings(self) -> dict[str, object]:
        return {}

    def start(self) -> bytes:
        return self._out(self._sink.take())

    def encode(self, audio: np.ndarray) -> bytes:
        self._write(self._input.convert(audio))
        return self._out(self._sink.take())

    def finish(self) -> bytes:
        self._write(self._input.flush())
        self._file.close()  # the codec's tail; libsndfile's header rewrites are dropped by the sink
        return self._out(self._sink.take(), final=True)

    def _write(self, samples: np.ndarray) -> None:
        if samples.size:
            self._file.write(samples)

    def _out(self, data: bytes, final: bool = False) -> bytes:
        return data


# MPEG-1 Layer III header tables, only to measure LAME's blank first frame.
_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG1_RATES = (44100, 48000, 32000)


def blank_frame_length(head: bytes) -> int | None:
    """Length of a leading MPEG-1 Layer III frame that is all zeros after its header; 0 if the stream does not
    start with one; None if `head` is too short to tell."""
    if len(head) < 4:
        return None
    if head[0] != 0xFF or head[1] & 0xFE != 0xFA:  # frame sync, MPEG-1, Layer III
        return 0
    bitrate_index, rate_index, padding = head[2] >> 4, (head[2] >> 2) & 3, (head[2] >> 1) & 1
    if not 0 < bitrate_index < 15 or rate_index == 3:
        return 0
    length = 144000 * _MPEG1_L3_KBPS[bitrate_index] // _MPEG1_RATES[rate_index] + padding
    if len(head) < length:
        return None
    return 0 if any(head[4:length]) else length


class Mp3Encoder(SoundfileEncoder):
    """MPEG-1 Layer III by LAME, mono, constant 64 kbit/s.

    Constant bitrate: a streamed MP3 has no Xing header, and players then estimate length and seek positions
    from the bitrate, which is only right for CBR. 64 kbit/s keeps mono speech at 32 kHz clean.

    Seek-back: LAME writes a blank frame (a header, then zeros) first, which libsndfile fills with the Xing/LAME
    tag at close (the frame count and the encoder delay and padding for gapless decoding). That rewrite cannot
    reach a client, and the blank frame would play as 1152 samples of silence, so the frame is left out: the
    stream starts with the first audio frame, as ffmpeg's MP3 written to a pipe does. The price: decoders cannot
    trim LAME's delay (1105 samples) and final padding (under one 1152-sample frame), at most 71 ms at 32 kHz.
    """

    content_type = "audio/mpeg"
    _format, _subtype = "MP3", "MPEG_LAYER_III"
    _legal_rates = frozenset(_MPEG1_RATES)  # MPEG-1 only (and only its header is parsed above)
    BIT_RATE_KBPS = 64

    def __init__(self, model_rate: int) -> None:
        self._head: bytearray | None = bytearray()  # bytes held until the blank frame is recognised
        super().__init__(model_rate)

    def _settings(self) -> dict[str, object]:
        # libsndfile sets the MPEG-1 CBR bitrate to 320 - level * 288 kbit/s.
        return {"bitrate_mode": "CONSTANT", "compression_level": (320 - self.BIT_RATE_KBPS) / 288}

    def _out(self, data: bytes, final: bool = False) -> bytes:
        if self._head is None:
            return data
        self._head += data
        length = blank_frame_length(self._head)
        if length is None and not final:
            return b""
        head, self._head = bytes(self._head), None
        return head[length or 0 :]


class FlacEncoder(SoundfileEncoder):
    """FLAC, 16-bit mono at the model's rate: decodes to exactly the samples of the WAV stream.

    Compression level 2 of 8, the strongest with 1152-sample blocks (3 and up use 4096): libFLAC holds back the
    block being filled, at most 36 ms at 32 kHz instead of 128 ms, for a few percent more bytes.

    Seek-back: at close libsndfile rewrites STREAMINFO's minimum and maximum frame size, total samples and MD5.
    Dropped: the STREAMINFO sent first has 0 in each, which FLAC defines as "unknown", so decoders read to the
    end of the stream (ffprobe then shows no duration) and skip the MD5 check.
    """

    content_type = "audio/flac"
    _format, _subtype = "FLAC", "PCM_16"

    def _settings(self) -> dict[str, object]:
        return {"compression_level": 0.25}  # libsndfile: FLAC level round(8 * 0.25) = 2
