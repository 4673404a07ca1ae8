"""Whether a streaming client reads its audio fast enough to keep a synthesis slot.

uvicorn's `send` waits while the client is not reading (backpressure). A listener that plays in real time
makes the server wait, in total, no longer than the audio it has been sent; a client that reads slower than
`min_rate` × real time falls further behind that every second. Once it is `grace` seconds behind, it is
dropped, so a handful of slow readers cannot hold every slot of the server.
"""

from __future__ import annotations


class ReadPace:
    def __init__(self, min_rate: float, grace: float) -> None:
        self.min_rate = min_rate
        self.grace = grace
        self.waited_s = 0.0  # time spent in send, waiting for the client
        self.audio_s = 0.0  # audio the client has taken

    def allowance(self) -> float:
        """Seconds the next send may wait for the client before it is too slow (never more than `grace`)."""
        if self.min_rate <= 0:
            return self.grace
        return min(self.grace, self.grace + self.audio_s / self.min_rate - self.waited_s)

    def record(self, waited_s: float, audio_s: float) -> None:
        self.waited_s += waited_s
        self.audio_s += audio_s
