"""Per-client rate limit for speech requests (off unless RATE_LIMIT_PER_MINUTE is set), for public Spaces."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimited(Exception):
    """`client` has spent its `per_minute` requests; the next one is allowed in `wait` seconds."""

    def __init__(self, client: str, per_minute: int, wait: int) -> None:
        super().__init__(f"{client} is over {per_minute} requests per minute")
        self.client, self.per_minute, self.wait = client, per_minute, wait


class RateLimiter:
    """A token bucket per client address: `per_minute` requests, refilled evenly, bursts up to `per_minute`.

    The table holds at most `max_clients` buckets, least recently seen first: a new client beyond that
    evicts the oldest, in O(1), so a flood of addresses costs neither memory nor time per request. An
    evicted client comes back with a full bucket, which is what it would have after a minute of silence.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 10000) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last update)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, client: str) -> int | None:
        """Spend one request for `client`; None when allowed, else the whole seconds until one is allowed."""
        if not self.enabled:
            return None
        now = self.clock()
        state = self._buckets.get(client)
        if state is None:
            if len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
            tokens = self.capacity
        else:
            self._buckets.move_to_end(client)
            tokens = min(self.capacity, state[0] + (now - state[1]) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        self._buckets[client] = (tokens - 1.0, now)
        return None

    def check(self, client: str) -> None:
        """Spend one request for `client`, or raise RateLimited."""
        wait = self.take(client)
        if wait is not None:
            raise RateLimited(client, self.per_minute, wait)

    def __len__(self) -> int:
        return len(self._buckets)
