"""Which address a request is counted as (api/client_address.py): the peer, or our proxies' X-Forwarded-For entry.

The end-to-end test behind a real HAProxy is tests/test_proxy_e2e.py.
"""

from __future__ import annotations

import pytest

from api.client_address import ClientAddresses
from settings import Settings


def scope(peer: str | None, *forwarded: str) -> dict:
    headers = [(b"host", b"example")] + [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    return {"type": "http", "client": (peer, 51234) if peer is not None else None, "headers": headers}


def resolver(trusted: str = "", hops: int = 1) -> ClientAddresses:
    settings = Settings(trusted_proxies=trusted, proxy_hops=hops)
    settings.validate()
    return ClientAddresses.from_settings(settings)


def test_by_default_the_header_is_never_read() -> None:
    assert resolver().resolve(scope("127.0.0.1", "203.0.113.9")) == "127.0.0.1"
    assert resolver().resolve(scope("198.51.100.7", "203.0.113.9, 127.0.0.1")) == "198.51.100.7"


def test_a_trusted_peer_names_the_client_in_the_rightmost_entry() -> None:
    addresses = resolver("127.0.0.1")
    assert addresses.resolve(scope("127.0.0.1", "203.0.113.9")) == "203.0.113.9"
    # What the client wrote itself is on the left, and ignored:
    assert addresses.resolve(scope("127.0.0.1", "1.2.3.4, 5.6.7.8, 203.0.113.9")) == "203.0.113.9"


def test_every_occurrence_of_the_header_counts_in_order() -> None:
    # HAProxy's `option forwardfor` adds its own header line after the client's.
    assert resolver("127.0.0.1").resolve(scope("127.0.0.1", "1.2.3.4", "203.0.113.9")) == "203.0.113.9"
    assert resolver("127.0.0.1", hops=2).resolve(scope("127.0.0.1", "1.2.3.4, 203.0.113.9", "10.0.0.2")) == "203.0.113.9"


def test_hops_counts_our_proxies_from_the_right() -> None:
    addresses = resolver("10.0.0.0/8", hops=2)
    assert addresses.resolve(scope("10.0.0.3", "6.6.6.6, 203.0.113.9, 10.0.0.2")) == "203.0.113.9"
    # Fewer entries than our proxies: not written by them, so the peer it is.
    assert addresses.resolve(scope("10.0.0.3", "203.0.113.9")) == "10.0.0.3"


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    addresses = resolver("10.0.0.0/8, 192.168.1.1")
    assert addresses.resolve(scope("10.200.3.4", "203.0.113.9")) == "203.0.113.9"  # inside the network
    assert addresses.resolve(scope("192.168.1.1", "203.0.113.9")) == "203.0.113.9"
    assert addresses.resolve(scope("192.168.1.2", "203.0.113.9")) == "192.168.1.2"
    assert addresses.resolve(scope("11.0.0.1", "203.0.113.9")) == "11.0.0.1"


def test_star_trusts_any_peer() -> None:
    assert resolver("*").resolve(scope("198.51.100.7", "1.2.3.4, 203.0.113.9")) == "203.0.113.9"


def test_ipv6_peers_networks_and_entries() -> None:
    addresses = resolver("::1, fd00::/8")
    assert addresses.resolve(scope("::1", "2001:db8::7")) == "2001:db8::7"
    assert addresses.resolve(scope("fd12:3456::1", "2001:db8:0:0:0:0:0:7")) == "2001:db8::7"  # one spelling per address
    assert addresses.resolve(scope("2001:db8::99", "203.0.113.9")) == "2001:db8::99"
    # A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d; it is that IPv4 address.
    assert resolver("127.0.0.1").resolve(scope("::ffff:127.0.0.1", "203.0.113.9")) == "203.0.113.9"


@pytest.mark.parametrize(
    "entry", ["", " ", "unknown", "203.0.113.9:4711", "[2001:db8::7]", "1.2.3", "999.1.1.1", "a\r\nb", "x" * 5000]
)
def test_a_malformed_entry_means_the_peer(entry: str) -> None:
    assert resolver("127.0.0.1").resolve(scope("127.0.0.1", f"203.0.113.9, {entry}")) == "127.0.0.1"


def test_no_header_or_no_peer() -> None:
    assert resolver("127.0.0.1").resolve(scope("127.0.0.1")) == "127.0.0.1"
    assert resolver("*").resolve(scope(None, "203.0.113.9")) == "unknown"


def test_settings_validate_the_proxies_and_hops() -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.local").validate()
    with pytest.raises(ValueError, match="PROXY_HOPS"):
        Settings(proxy_hops=0).validate()


def test_a_space_trusts_its_proxy_unless_told_otherwise() -> None:
    assert Settings.from_env({}).trusted_proxies == ""
    assert Settings.from_env({"SPACE_ID": "someone/tts"}).trusted_proxies == "*"
    assert Settings.from_env({"SPACE_ID": "someone/tts", "TRUSTED_PROXIES": "10.0.0.0/8"}).trusted_proxies == "10.0.0.0/8"


def test_the_start_up_log_says_which_policy_is_in_effect() -> None:
    assert "ignored" in resolver().describe()
    assert "TRUSTED_PROXIES=*" in resolver("*").describe() and "PROXY_HOPS=1" in resolver("*").describe()
    assert "TRUSTED_PROXIES=10.0.0.0/8,::1/128" in resolver("10.0.0.0/8,::1", hops=2).describe()
