"""Per-client rate limit for speech requests (off unless RATE_LIMIT_PER_MINUTE is set), for public Spaces."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimited(Exception):
    """`client` has spent its `per_minute` requests; the next one is allowed in `wait` seconds."""

    def __init__(self, client: str, per_minute: int, wait: int) -> None:
        super().__init__(f"{client} is over {per_minute} requests per minute")
        self.client, self.per_minute, self.wait = client, per_minute, wait


class RateLimiter:
    """A token bucket per client address: `per_minute` requests, refilled evenly, bursts up to `per_minute`.

    The table of buckets is bounded: when it reaches `max_clients`, buckets that have refilled completely
    (clients idle for a minute or more) are forgotten, since a full bucket is the same as no bucket.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 10000) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last update)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, client: str) -> int | None:
        """Spend one request for `client`; None when allowed, else the whole seconds until one is allowed."""
        if not self.enabled:
            return None
        now = self.clock()
        tokens, last = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        if client not in self._buckets and len(self._buckets) >= self.max_clients:
            self._forget_idle(now)
        self._buckets[client] = (tokens - 1.0, now)
        return None

    def check(self, client: str) -> None:
        """Spend one request for `client`, or raise RateLimited."""
        wait = self.take(client)
        if wait is not None:
            raise RateLimited(client, self.per_minute, wait)

    def _forget_idle(self, now: float) -> None:
        full_after = self.capacity / self.rate
        self._buckets = {client: state for client, state in self._buckets.items() if now - state[1] < full_after}

    def __len__(self) -> int:
        return len(self._buckets)
