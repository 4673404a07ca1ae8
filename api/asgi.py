"""Raw ASGI: the interface as type aliases, reading request headers and bodies, and what can go wrong reading them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class ClientGone(Exception):
    """The client disconnected before we answered."""


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


class BodyTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"request body not complete within {seconds} s")
        self.seconds = seconds


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (names in ASGI scopes are lower-case bytes)."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, limit: int, declared_length: str | None, timeout: float) -> bytes:
    """The whole request body within `timeout` seconds, refusing anything over `limit` bytes before or while reading it."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyTimeout(timeout) from None
