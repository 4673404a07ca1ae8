"""The bookkeeping behind the connection limits (api/connections.py); the limits on real sockets are in
tests/test_protocol_hardening_e2e.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from api.client_address import ClientAddresses, client_key
from api.connections import ConnectionTable
from settings import Settings


def trusted_proxies(spec: str) -> Callable[[str], bool]:
    return ClientAddresses.from_settings(Settings(trusted_proxies=spec)).is_proxy


NOBODY = trusted_proxies("")


def test_trusted_proxies() -> None:
    assert not NOBODY("127.0.0.1")
    assert trusted_proxies("*")("203.0.113.5")
    some = trusted_proxies("10.0.0.0/8, 192.168.1.7,::1")
    assert some("10.1.2.3") and some("192.168.1.7") and some("::1")
    assert not some("192.168.1.8") and not some("11.0.0.1") and not some("not an address")
    with pytest.raises(ValueError):
        trusted_proxies("10.0.0.0/8,proxy.example")


def test_client_key_counts_ipv6_per_64() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")


def test_idle_connections_make_room_longest_idle_first() -> None:
    table: ConnectionTable[str] = ConnectionTable(max_total=3, max_per_client=0, trusted=NOBODY)
    for name, address in [("a", "192.0.2.1"), ("b", "192.0.2.2"), ("c", "192.0.2.3")]:
        table.add(name, address)
        assert table.make_room(name) == ([], None)
    table.busy("a")
    table.add("d", "192.0.2.4")
    assert table.make_room("d") == (["b"], None)  # a has a request in progress; b is the longest idle
    table.idle("a")  # a's request ended: now idle more recently than c
    table.add("e", "192.0.2.5")
    assert table.make_room("e") == (["c"], None)
    assert len(table) == 3


def test_only_requests_in_progress_fill_the_limit() -> None:
    table: ConnectionTable[str] = ConnectionTable(max_total=2, max_per_client=0, trusted=NOBODY)
    for name in "ab":
        table.add(name, "192.0.2.1")
        table.busy(name)
    table.add("c", "192.0.2.2")
    assert table.make_room("c") == ([], "total")  # nothing to close: c stays over the limit for now...
    table.add("d", "192.0.2.3")
    assert table.make_room("d") == (["c"], "total")  # ...and is the first to go for the next one
    table.remove("a")
    assert table.make_room("d") == ([], None)


def test_per_client_cap_recycles_the_clients_own_idle_connections() -> None:
    table: ConnectionTable[str] = ConnectionTable(max_total=100, max_per_client=2, trusted=NOBODY)
    table.add("other", "192.0.2.9")
    for name in ["a", "b"]:
        table.add(name, "192.0.2.1")
        assert table.make_room(name) == ([], None)
    table.add("c", "192.0.2.1")
    assert table.make_room("c") == (["a"], None)  # its own longest idle, not "other"
    table.busy("b")
    table.busy("c")
    table.add("d", "192.0.2.1")
    assert table.make_room("d") == ([], "client")
    assert table.connections_of("192.0.2.1") == 3
    table.remove("d")
    table.remove("b")
    assert table.connections_of("192.0.2.1") == 1


def test_trusted_peers_and_uncapped_tables_have_no_per_client_cap() -> None:
    proxy = trusted_proxies("192.0.2.1")
    table: ConnectionTable[int] = ConnectionTable(max_total=100, max_per_client=2, trusted=proxy)
    for number in range(10):
        table.add(number, "192.0.2.1")
        table.busy(number)
        assert table.make_room(number) == ([], None)
    uncapped: ConnectionTable[int] = ConnectionTable(max_total=100, max_per_client=0, trusted=NOBODY)
    for number in range(10):
        uncapped.add(number, "192.0.2.2")
        assert uncapped.make_room(number) == ([], None)
