"""uvicorn's HTTP protocol, guarded: a deadline and a size limit for each request's head, connection limits
that idle sockets cannot fill, OpenAI-shaped errors.

uvicorn arms no timer while a connection sends its request line and headers, and any byte received cancels
its keep-alive timer: a client that opens connections and trickles a header byte every few seconds would
hold them forever. Here every connection must finish each request head within `head_timeout` seconds of
connecting or of its previous response ending; otherwise it is closed.

Nor does uvicorn bound a head's size: its parser concatenates the URL and each header as they arrive, so one
client sending megabytes of header stalls the event loop for everyone. Here a head over MAX_HEAD_BYTES is
answered 431 as soon as that many bytes arrived without its end.

Connections count against MAX_CONNECTIONS and, per client address, MAX_CONNECTIONS_PER_CLIENT; to make
room, idle ones (no request in progress) are closed, longest idle first (api/connections.py), so only
requests in progress can fill a limit and get a request refused.

uvicorn's own limit (`limit_concurrency`) and parser errors answer in plain text; clients of this server parse
`{"error": {...}}`, so the limits and the parser's 400 are answered here in that shape.

SHUTDOWN_TIMEOUT seconds after SIGTERM uvicorn cancels the requests still running and logs each one's
CancelledError as "Exception in ASGI application" with a traceback. The application logs each cut request
itself (`outcome=shutdown`), so that record says nothing more and is dropped here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.connections import ConnectionTable, Limit
from api.errors import ApiError, error_body
from api.responses import NOSNIFF, ErrorResponse

RETRY_AFTER_S = 5
#: The most bytes a request line and headers may take together (their CRLFs and the blank line included).
MAX_HEAD_BYTES = 32 * 1024
#: After an answer that closes the connection early, how long what the client still sends is read and dropped,
#: so that closing does not reset the connection before the client has read the answer.
LINGER_S = 2.0
#: The kernel's send buffer per connection (Linux doubles it): 2 s of 32 kHz WAV, 8 s of mp3, far more than a
#: connection needs in flight at audio rates. Left to itself the kernel grows it to 4 MiB, a minute of audio that
#: a client which barely reads would seem to have taken; bounded, the server's sends wait for the client soon,
#: so its reading pace can be judged (api/read_pace.py) and no synthesis runs ahead of a client that has not
#: read (engine/synthesis/speech.py pauses the decoding while a send waits).
SEND_BUFFER_BYTES = 64 * 1024

#: The ASGI app a request gets instead of ours when connections with requests in progress fill MAX_CONNECTIONS.
too_many_connections = ErrorResponse(
    ApiError(
        503,
        f"the server has too many open connections; retry after {RETRY_AFTER_S} s",
        code="too_many_connections",
        headers=[(b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close"), NOSNIFF],
    )
)

#: ... and when this client's own connections with requests in progress fill MAX_CONNECTIONS_PER_CLIENT.
too_many_client_connections = ErrorResponse(
    ApiError(
        429,
        f"too many open connections from your address with requests in progress; retry after {RETRY_AFTER_S} s",
        type="rate_limit_error",
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
    max_head_bytes: int = MAX_HEAD_BYTES
    table: ConnectionTable[GuardedProtocol] = ConnectionTable(100, 0, lambda address: False)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._reading_head = True  # from a connection's start and after each request, until a head is complete
        self._head_bytes = 0
        self._answered_and_closing = False
        self._linger: asyncio.TimerHandle | None = None
        self.table.add(self, self.client[0] if self.client else None)
        self._make_room()  # this connection may stay over a limit: it is then the first to go for the next one
        self._arm_head_deadline()

    def _make_room(self) -> Limit | None:
        closing, over = self.table.make_room(self)
        for idle in closing:
            idle.logger.debug("closing an idle connection from %s to make room", idle.client)
            idle._cancel_head_deadline()
            idle.transport.close()
        return over

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

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

    def data_received(self, data: bytes) -> None:
        """Feed the parser a head's bytes only up to MAX_HEAD_BYTES: a longer head is refused before it ends.

        Bytes go to the parser in slices no longer than the limit, so a head beginning inside a slice
        (pipelined after a previous request) is counted from the next slice on: at worst twice the limit.
        """
        view = memoryview(data)
        while view and not self._answered_and_closing and not self.transport.is_closing():
            size = self.max_head_bytes - self._head_bytes if self._reading_head else self.max_head_bytes
            part, view = view[:size], view[size:]
            if self._reading_head:
                self._head_bytes += len(part)
            super().data_received(part)  # type: ignore[arg-type]  # httptools reads any buffer
            if self._reading_head and self._head_bytes >= self.max_head_bytes and not self._answered_and_closing:
                self.logger.warning("refusing a request head over %d bytes from %s", self.max_head_bytes, self.client)
                message = f"the request line and headers are larger than {self.max_head_bytes} bytes"
                body = error_body(message, "invalid_request_error", "request_header_fields_too_large")
                self._answer_and_close(b"431 Request Header Fields Too Large", body)

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser rejects (bad chunk size, two Content-Lengths...): the error shape clients parse."""
        body = error_body(f"malformed HTTP request: {msg}", "invalid_request_error", "invalid_http")
        self._answer_and_close(b"400 Bad Request", body)

    def _answer_and_close(self, status: bytes, body: bytes) -> None:
        """Answer without the application, then close: our side at once, theirs after LINGER_S at most."""
        self._answered_and_closing = True
        self._cancel_head_deadline()
        head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n%s: %s\r\n\r\n"
        self.transport.write(head % (status, len(body), *NOSNIFF) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        self._reading_head = False
        self._head_bytes = 0
        self.table.busy(self)
        over = self._make_room()
        if over is None:
            super().on_headers_complete()
            return
        refusal = too_many_connections if over == "total" else too_many_client_connections
        self.logger.warning(
            "connections with requests in progress fill %s (%d open, %d from %s): answering %d",
            "MAX_CONNECTIONS" if over == "total" else "MAX_CONNECTIONS_PER_CLIENT",
            len(self.table),
            self.table.connections_of(self.client[0]) if self.client else 0,
            self.client[0] if self.client else "?",
            refusal.status,
        )
        app, self.app = self.app, refusal  # uvicorn starts this request's task with self.app
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._request_in_progress():  # else a pipelined request started
            self.table.idle(self)
            self._arm_head_deadline()

    def _unsupported_upgrade_warning(self) -> None:
        self.logger.info("an Upgrade request was answered as plain HTTP: this server does not speak WebSocket")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        if self._linger is not None:
            self._linger.cancel()
        self.table.remove(self)
        super().connection_lost(exc)


def guarded_protocol(
    head_timeout: float, max_connections: int, max_per_client: int = 0, is_proxy: Callable[[str], bool] = lambda _: False
) -> type[GuardedProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these limits and its own table of connections.

    `is_proxy` tells the peers exempt from the per-client cap (TRUSTED_PROXIES): behind a reverse proxy every
    connection comes from the proxy's address.
    """
    logging.getLogger("uvicorn.error").addFilter(not_a_shutdown_cut)  # once: a logger holds a filter only once
    table: ConnectionTable[GuardedProtocol] = ConnectionTable(max_connections, max_per_client, is_proxy)
    return type("GuardedProtocol", (GuardedProtocol,), {"head_timeout": head_timeout, "table": table})
