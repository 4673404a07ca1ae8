"""The per-address token bucket, on a fake clock (the end-to-end test is in tests/test_limits_e2e.py)."""

from __future__ import annotations

from api.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_set_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock)  # one request every 10 s, bursts of 6
    assert [limiter.take("a") for _ in range(6)] == [None] * 6
    assert limiter.take("a") == 10
    assert limiter.take("b") is None  # another address has its own bucket
    clock.now += 4
    assert limiter.take("a") == 6  # a refusal spends nothing
    clock.now += 6
    assert limiter.take("a") is None
    assert limiter.take("a") == 10


def test_off_when_zero() -> None:
    limiter = RateLimiter(0, Clock())
    assert all(limiter.take("a") is None for _ in range(1000))
    assert len(limiter) == 0


def test_the_table_is_capped_and_forgets_the_least_recently_seen() -> None:
    clock = Clock()  # frozen: no bucket refills, so nothing is forgotten for being idle
    limiter = RateLimiter(3, clock, max_clients=100)
    for client in ("early", "regular"):
        assert [limiter.take(client) for _ in range(3)] == [None] * 3
        assert limiter.take(client) == 20
    for n in range(5000):
        assert limiter.take(f"10.1.{n // 256}.{n % 256}") is None  # each a new client, with a full bucket
        assert len(limiter) <= 100
        if n % 50 == 0:
            assert limiter.take("regular") == 20  # seen recently, so kept: still refused
    assert len(limiter) == 100
    assert limiter.take("regular") == 20
    assert limiter.take("early") is None  # evicted long ago: back with a full bucket
