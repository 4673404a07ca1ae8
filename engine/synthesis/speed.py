"""How fast this machine synthesises right now, measured at run time: the chunk plan sizes chunks with it.

The time of a T2S job is about proportional to the tokens it decodes (one step each), and the time of a vocoder
run is a fixed cost (thousands of small graph nodes) plus a part proportional to the tokens it vocodes. Both are
wall-clock times of real jobs, so they include whatever else shares the cores (other requests, other processes):
an exponential average follows the load as it changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

#: Weight of a new measurement in the averages: a few jobs are enough to follow a change of load.
SMOOTHING = 0.3


@dataclass
class SynthesisSpeed:
    """Seconds per T2S token, and the vocoder's fixed and per-token seconds; defaults are a 2-core guess."""

    decode_s_per_token: float = 0.02
    vocode_fixed_s: float = 0.05
    vocode_s_per_token: float = 0.022
    _vocode_samples: list[tuple[int, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def decoded(self, tokens: int, seconds: float) -> None:
        if tokens > 0:
            with self._lock:
                self.decode_s_per_token += SMOOTHING * (seconds / tokens - self.decode_s_per_token)

    def vocoded(self, tokens: int, seconds: float) -> None:
        """One vocoder run of `tokens` tokens (context included) took `seconds`."""
        if tokens <= 0:
            return
        with self._lock:
            self._vocode_samples = [*self._vocode_samples[-7:], (tokens, seconds)]
            fixed = self._fixed_cost()
            per_token = max(0.0, seconds - fixed) / tokens
            self.vocode_s_per_token += SMOOTHING * (per_token - self.vocode_s_per_token)

    def _fixed_cost(self) -> float:
        """The fixed part, from the recent runs of different sizes (a line through them), when they differ enough."""
        sizes = [tokens for tokens, _ in self._vocode_samples]
        if max(sizes) < 2 * min(sizes):
            return self.vocode_fixed_s
        mean_n = sum(sizes) / len(sizes)
        mean_t = sum(seconds for _, seconds in self._vocode_samples) / len(sizes)
        spread = sum((n - mean_n) ** 2 for n in sizes)
        slope = sum((n - mean_n) * (t - mean_t) for n, t in self._vocode_samples) / spread
        if slope > 0:
            fixed = min(max(0.0, mean_t - slope * mean_n), 0.5)
            self.vocode_fixed_s += SMOOTHING * (fixed - self.vocode_fixed_s)
        return self.vocode_fixed_s

    def vocode_s(self, tokens: int) -> float:
        return self.vocode_fixed_s + self.vocode_s_per_token * tokens
