"""Which address a request comes from: the socket peer, or what our own proxies say in X-Forwarded-For.

Each proxy appends the address it received the request from to X-Forwarded-For, so the entries a client can
forge are on the left and the ones our proxies wrote are on the right. With `hops` proxies in front of the
server, the `hops`-th entry from the right is what the outermost of them saw: the client. It is read only
when the peer is one of the trusted proxies; anything else (an untrusted peer, a missing or malformed entry)
means the peer itself. uvicorn's own proxy-headers middleware takes the leftmost entry instead, which the
client chooses, so `python server.py` turns it off and resolves the address here.
"""

from __future__ import annotations

import ipaddress

from api.asgi import Scope
from settings import IPNetwork, Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def client_key(address: str) -> str:
    """The unit every per-client limit counts (connections, streams, the rate limit): the address, or for IPv6
    its /64, since one host or site holds a whole /64 and could otherwise take a fresh budget per address."""
    ip = _address(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class ClientAddresses:
    """Resolves each request's client address: `trusted` proxies (None: any peer; (): none), `hops` of them in a row."""

    def __init__(self, trusted: tuple[IPNetwork, ...] | None = (), hops: int = 1) -> None:
        if hops < 1:
            raise ValueError("PROXY_HOPS must be at least 1")
        self.trusted = trusted
        self.hops = hops

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientAddresses:
        return cls(settings.trusted_networks(), settings.proxy_hops)

    def describe(self) -> str:
        """The policy in effect, for the start-up log."""
        if self.trusted == ():
            return "client address: the connection's peer; X-Forwarded-For is ignored (TRUSTED_PROXIES is empty)"
        return (
            f"client address: entry {self.hops} from the right of X-Forwarded-For (PROXY_HOPS={self.hops}) when the "
            f"peer is in TRUSTED_PROXIES={self._trusted_text()}, else the peer"
        )

    def _trusted_text(self) -> str:
        return "*" if self.trusted is None else ",".join(map(str, self.trusted))

    def trusts(self, peer: IPAddress) -> bool:
        return self.trusted is None or any(peer in network for network in self.trusted)

    def is_proxy(self, address: str) -> bool:
        """Whether a connection from `address` comes from one of TRUSTED_PROXIES (not a client of its own)."""
        peer = _address(address)
        return peer is not None and self.trusted != () and self.trusts(peer)

    def resolve(self, scope: Scope) -> str:
        peer_entry = scope.get("client")
        if not peer_entry:
            return UNKNOWN
        peer_host = str(peer_entry[0])
        peer = _address(peer_host)
        if peer is None:  # not an IP socket (a unix socket's path): no proxy of ours to trust
            return peer_host
        if self.trusted == () or not self.trusts(peer):
            return str(peer)
        forwarded = [value for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
        entries = b",".join(forwarded).decode("latin-1").split(",") if forwarded else []
        if len(entries) < self.hops:
            return str(peer)
        client = _address(entries[-self.hops])
        return str(client) if client is not None else str(peer)
