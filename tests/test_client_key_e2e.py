"""On a real server behind a trusted proxy (X-Forwarded-For from 127.0.0.1): two IPv6 addresses of one /64
share the per-client stream cap and the rate limit, as they already share the connection cap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import LONG, SPEECH, start_demo_server
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

LIMIT = 3  # requests per minute: far more than the test takes to refill one


@pytest.fixture(scope="module")
def behind_proxy(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"TRUSTED_PROXIES": "127.0.0.1", "RATE_LIMIT_PER_MINUTE": str(LIMIT), "MAX_STREAMS_PER_CLIENT": "1"}
    server = start_demo_server("client-key", tmp_path_factory.mktemp("no-models"), env)
    yield server
    server.stop()


def forwarded(address: str) -> dict[str, str]:
    return {"x-forwarded-for": address}


def test_one_ipv6_64_shares_the_rate_limit(behind_proxy: ServerProcess) -> None:
    url = f"{behind_proxy.base_url}{SPEECH}"
    statuses = [
        httpx.post(url, json={}, headers=forwarded(f"2001:db8:a:1::{n + 1}"), timeout=30).status_code for n in range(LIMIT + 2)
    ]
    assert statuses == [400] * LIMIT + [429, 429], statuses  # a fresh address of the same /64 bought no fresh budget
    assert httpx.post(url, json={}, headers=forwarded("2001:db8:a:2::1"), timeout=30).status_code == 400  # another /64


def test_one_ipv6_64_shares_the_stream_cap(behind_proxy: ServerProcess) -> None:
    url = f"{behind_proxy.base_url}{SPEECH}"
    body = {"model": "demo", "input": LONG, "response_format": "pcm"}
    with httpx.stream("POST", url, json=body, headers=forwarded("2001:db8:b:1::1"), timeout=120) as first:
        assert first.status_code == 200
        second = httpx.post(url, json=body, headers=forwarded("2001:db8:b:1::2"), timeout=120)
        assert second.status_code == 429, second.text[:200]
        assert second.json()["error"]["code"] == "too_many_concurrent_requests"
        other = httpx.post(url, json={**body, "input": "こんにちは。"}, headers=forwarded("2001:db8:b:2::1"), timeout=120)
        assert other.status_code == 200  # another /64 is another client
