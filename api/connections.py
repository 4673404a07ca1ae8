"""Who is connected, for the connection limits of api/protocol.py: counts per client address, and the
connections that have no request in progress, longest idle first.

A connection costs a file descriptor from its first byte, but only one with a request in progress is
doing work. So the limits make room by closing idle connections (no request head yet, or a keep-alive
connection between requests), longest idle first, and refuse a request only when connections with
requests in progress fill a limit. A client that opens bare sockets in a loop thus recycles its own
connections instead of locking everyone out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Literal, TypeVar

from api.client_address import client_key

#: The limit a request is over: the client's own (MAX_CONNECTIONS_PER_CLIENT) or the server's (MAX_CONNECTIONS).
Limit = Literal["client", "total"]
C = TypeVar("C", bound=Hashable)


class ConnectionTable(Generic[C]):
    """Open connections by client, which of them are idle, and which to close to make room for another."""

    def __init__(self, max_total: int, max_per_client: int, trusted: Callable[[str], bool]) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client  # 0: no cap per client
        self.trusted = trusted
        self._client: dict[C, str | None] = {}  # connection -> its client key, None when uncapped
        self._per_client: dict[str, int] = {}
        self._idle: OrderedDict[C, None] = OrderedDict()  # longest idle first
        self._idle_per_client: dict[str, OrderedDict[C, None]] = {}

    def __len__(self) -> int:
        return len(self._client)

    def connections_of(self, address: str) -> int:
        return self._per_client.get(client_key(address), 0)

    def add(self, connection: C, address: str | None) -> None:
        """A new connection, idle until its request head is complete."""
        capped = address is not None and self.max_per_client > 0 and not self.trusted(address)
        key = client_key(address) if capped and address is not None else None
        self._client[connection] = key
        if key is not None:
            self._per_client[key] = self._per_client.get(key, 0) + 1
        self.idle(connection)

    def remove(self, connection: C) -> None:
        if connection not in self._client:
            return
        self.busy(connection)
        key = self._client.pop(connection)
        if key is not None:
            self._per_client[key] -= 1
            if not self._per_client[key]:
                del self._per_client[key]

    def idle(self, connection: C) -> None:
        """No request in progress (again): closable to make room, after those idle longer."""
        if connection not in self._client:
            return
        self._idle[connection] = None
        self._idle.move_to_end(connection)
        key = self._client[connection]
        if key is not None:
            own = self._idle_per_client.setdefault(key, OrderedDict())
            own[connection] = None
            own.move_to_end(connection)

    def busy(self, connection: C) -> None:
        """A request in progress: never closed to make room."""
        self._idle.pop(connection, None)
        key = self._client.get(connection)
        if key is not None and key in self._idle_per_client:
            own = self._idle_per_client[key]
            own.pop(connection, None)
            if not own:
                del self._idle_per_client[key]

    def make_room(self, connection: C) -> tuple[list[C], Limit | None]:
        """Idle connections to close (now removed from the table) so that `connection` fits the limits, and the
        limit it is still over (every other connection counted there has a request in progress), if any."""
        closing: list[C] = []
        key = self._client[connection]
        if key is not None:
            while self._per_client[key] > self.max_per_client:
                victim = self._longest_idle(self._idle_per_client.get(key), connection)
                if victim is None:
                    return closing, "client"
                self.remove(victim)
                closing.append(victim)
        while len(self._client) > self.max_total:
            victim = self._longest_idle(self._idle, connection)
            if victim is None:
                return closing, "total"
            self.remove(victim)
            closing.append(victim)
        return closing, None

    @staticmethod
    def _longest_idle(idle: OrderedDict[C, None] | None, besides: C) -> C | None:
        for candidate in idle or ():
            if candidate is not besides:
                return candidate
        return None
