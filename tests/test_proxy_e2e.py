"""The rate limit behind a real HAProxy (bench/haproxy.py, `option forwardfor`) and without one: a client that
sends a fresh X-Forwarded-For with every request is still one client.

Loopback has all of 127.0.0.0/8, so each test's client connects from its own source address (a bucket of its
own on the module's servers) and a second real client is just another source address. The first client through
the proxy has the proxy's own address, 127.0.0.1: a resolver that skips trusted entries from the right (as
uvicorn's does) would read on into the entries the client wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.haproxy import haproxy_in_front_of
from tests.helpers import SPEECH, start_demo_server
from tests.server_process import ServerProcess

LIMIT = 3  # requests per minute: one more every 20 s, far longer than each test takes


def start(name: str, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> ServerProcess:
    return start_demo_server(name, tmp_path_factory.mktemp("no-models"), {"RATE_LIMIT_PER_MINUTE": str(LIMIT), **env})


@pytest.fixture(scope="module")
def behind_proxy(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # FORWARDED_ALLOW_IPS=* was this project's advice for Spaces before TRUSTED_PROXIES: uvicorn then took the
    # leftmost entry, the client's own. `python server.py` no longer lets uvicorn read the header at all.
    server = start("behind-proxy", tmp_path_factory, {"TRUSTED_PROXIES": "127.0.0.1", "FORWARDED_ALLOW_IPS": "*"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def direct(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start("direct", tmp_path_factory, {})  # TRUSTED_PROXIES unset
    yield server
    server.stop()


def port(server: ServerProcess) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def spoofing(base_url: str, source: str, count: int) -> list[tuple[int, str]]:
    """`count` speech requests from `source`, each on a new connection claiming new addresses in X-Forwarded-For;
    (status, client request id) of each. The body is refused (400) after the rate limit has counted it."""
    results = []
    for n in range(count):
        client_id = f"spoof-{uuid.uuid4().hex[:12]}"
        headers = {"x-forwarded-for": f"198.51.100.{n}, 203.0.113.{n}", "x-request-id": client_id}
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as client:
            results.append((client.post(f"{base_url}{SPEECH}", json={}, headers=headers).status_code, client_id))
    return results


def assert_limited_as(server: ServerProcess, results: list[tuple[int, str]], source: str) -> None:
    statuses = [status for status, _ in results]
    assert statuses == [400] * LIMIT + [429] * (len(results) - LIMIT), "a fresh X-Forwarded-For bought a fresh budget"
    for _, client_id in (results[0], results[-1]):
        line = server.log_line(f"client_request_id={client_id}")
        assert f" client={source} " in line, line
        assert "198.51.100." not in line and "203.0.113." not in line


@pytest.mark.e2e
def test_through_the_proxy_a_spoofed_header_does_not_reset_the_limit(behind_proxy: ServerProcess) -> None:
    assert "TRUSTED_PROXIES=127.0.0.1/32" in behind_proxy.log()  # the start-up line naming the policy
    with haproxy_in_front_of(port(behind_proxy)) as url:
        assert_limited_as(behind_proxy, spoofing(url, "127.0.0.1", LIMIT + 5), "127.0.0.1")
        # Another real client behind the same proxy is told apart by the entry HAProxy wrote: its own budget.
        assert_limited_as(behind_proxy, spoofing(url, "127.0.0.4", LIMIT + 1), "127.0.0.4")


@pytest.mark.e2e
def test_a_peer_that_is_not_a_trusted_proxy_cannot_pick_its_address(behind_proxy: ServerProcess) -> None:
    assert_limited_as(behind_proxy, spoofing(behind_proxy.base_url, "127.0.0.5", LIMIT + 3), "127.0.0.5")


@pytest.mark.e2e
def test_without_trusted_proxies_the_header_is_ignored(direct: ServerProcess) -> None:
    assert "X-Forwarded-For is ignored" in direct.log()
    assert_limited_as(direct, spoofing(direct.base_url, "127.0.0.1", LIMIT + 5), "127.0.0.1")
