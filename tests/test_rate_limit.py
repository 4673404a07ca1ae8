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


def test_the_table_forgets_idle_clients_when_full() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock, max_clients=3)
    for client in ("a", "b", "c"):
        limiter.take(client)
    clock.now += 30
    limiter.take("c")  # active again
    clock.now += 31  # a and b have refilled completely (61 s idle); c has not
    assert limiter.take("d") is None
    assert len(limiter) == 2  # c and d
