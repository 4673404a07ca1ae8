"""One response's audio after synthesis: the speed change, then the chosen format's encoder."""

from __future__ import annotations

import numpy as np

from wavstream.formats import ENCODERS
from wavstream.stretch import TimeStretcher


class AudioOutput:
    """Segments in (float audio at the model's rate), response bytes out, in order.

    Not thread-safe, but a request pushes one segment at a time; the server runs `push` in a worker
    thread because encoding (mp3, aac) and time-stretching take CPU time the event loop must not spend.
    """

    def __init__(self, response_format: str, model_rate: int, speed: float = 1.0) -> None:
        self.encoder = ENCODERS[response_format](model_rate)
        self.stretcher = TimeStretcher(model_rate, speed)
        self.model_rate = model_rate
        self.seconds = 0.0  # audio sent so far, after the speed change

    @property
    def content_type(self) -> str:
        return self.encoder.content_type

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    def start(self) -> bytes:
        return self.encoder.start()

    def push(self, audio: np.ndarray) -> bytes:
        return self._encode(self.stretcher.process(audio))

    def finish(self) -> bytes:
        return self._encode(self.stretcher.flush()) + self.encoder.finish()

    def _encode(self, audio: np.ndarray) -> bytes:
        self.seconds += audio.size / self.model_rate
        return self.encoder.encode(audio) if audio.size else b""
