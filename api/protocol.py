"""uvicorn's HTTP protocol, guarded: a deadline for each request's head, a connection limit, OpenAI-shaped errors.

uvicorn arms no timer while a connection sends its request line and headers, and any byte received cancels
its keep-alive timer: a client that opens connections and trickles a header byte every few seconds would
hold them forever. Here every connection must finish each request head within `head_timeout` seconds of
connecting or of its previous response ending; otherwise it is closed.

uvicorn's own limit (`limit_concurrency`) and parser errors answer in plain text; clients of this server parse
`{"error": {...}}`, so the limit and the parser's 400 are answered here in that shape.

SHUTDOWN_TIMEOUT seconds after SIGTERM uvicorn cancels the requests still running and logs each one's
CancelledError as "Exception in ASGI application" with a traceback. The application logs each cut request
itself (`outcome=shutdown`), so that record says nothing more and is dropped here.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import ApiError, error_body
from api.responses import NOSNIFF, ErrorResponse

RETRY_AFTER_S = 5

#: The ASGI app a request gets instead of ours when MAX_CONNECTIONS connections are open.
too_many_connections = ErrorResponse(
    ApiError(
        503,
        f"the server has too many open connections; retry after {RETRY_AFTER_S} s",
        code="too_many_connections",
        headers=[(b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close"), NOSNIFF],
    )
)


def not_a_shutdown_cut(record: logging.LogRecord) -> bool:
    """False for uvicorn's report of a request task it cancelled: only its graceful shutdown cancels them."""
    exception = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exception, asyncio.CancelledError) and str(record.msg).startswith("Exception in ASGI application"))


class GuardedProtocol(HttpToolsProtocol):
    head_timeout: float = 10.0
    max_connections: int = 100

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection that did not send a request head within %.0f s", self.head_timeout)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser rejects (bad chunk size, two Content-Lengths...): the error shape clients parse."""
        body = error_body(f"malformed HTTP request: {msg}", "invalid_request_error", "invalid_http")
        head = (
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s: %s\r\n\r\n"
        )
        self.transport.write(head % (len(body), *NOSNIFF) + body)
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        if len(self.connections) <= self.max_connections:
            super().on_headers_complete()
            return
        self.logger.warning(
            "%d connections open (MAX_CONNECTIONS=%d): answering 503", len(self.connections), self.max_connections
        )
        app, self.app = self.app, too_many_connections  # uvicorn starts this request's task with self.app
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)


def guarded_protocol(head_timeout: float, max_connections: int) -> type[GuardedProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these limits."""
    logging.getLogger("uvicorn.error").addFilter(not_a_shutdown_cut)  # once: a logger holds a filter only once
    return type("GuardedProtocol", (GuardedProtocol,), {"head_timeout": head_timeout, "max_connections": max_connections})
