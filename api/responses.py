"""Whole responses as ASGI applications: each sends its own start and body (Starlette's idea)."""

from __future__ import annotations

import orjson

from api.asgi import Headers, Receive, Scope, Send
from api.errors import ApiError

#: On every response: browsers must take each Content-Type as sent and never guess (no JSON run as a script).
NOSNIFF = (b"x-content-type-options", b"nosniff")


class Response:
    """A status, headers and a body known in advance; Content-Type and Content-Length are set from them."""

    media_type: bytes | None = None

    def __init__(self, body: bytes, status: int = 200, headers: Headers | None = None, media_type: bytes | None = None) -> None:
        self.body = body
        self.status = status
        media_type = media_type or self.media_type
        content_type = [(b"content-type", media_type)] if media_type else []
        self.headers: Headers = [*content_type, (b"content-length", str(len(body)).encode()), *(headers or [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class JSONResponse(Response):
    media_type = b"application/json"

    def __init__(self, payload: object, status: int = 200, headers: Headers | None = None) -> None:
        super().__init__(orjson.dumps(payload), status, headers)


class ErrorResponse(Response):
    """An ApiError as the client sees it: its status, its OpenAI-shaped body, its headers and `extra` ones."""

    media_type = b"application/json"

    def __init__(self, error: ApiError, extra: Headers | None = None) -> None:
        super().__init__(error.body(), error.status, [*error.headers, *(extra or [])])
