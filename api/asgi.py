"""Small helpers over raw ASGI messages: headers, request bodies and JSON responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from api.errors import ApiError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class ClientGone(Exception):
    """The client disconnected before we answered."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (names in ASGI scopes are lower-case bytes)."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, limit: int, declared_length: str | None) -> bytes:
    """The whole request body, refusing (413) anything over `limit` bytes before or while reading it."""
    too_large = ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, payload: object, headers: Headers = (), *, raw: bytes | None = None) -> None:
    body = raw if raw is not None else orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
