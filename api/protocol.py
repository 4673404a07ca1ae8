"""uvicorn's HTTP protocol with a deadline for each request's head, and OpenAI-shaped malformed-request errors.

uvicorn arms no timer while a connection sends its request line and headers, and any byte received cancels
its keep-alive timer: a client that opens connections and trickles a header byte every few seconds would
hold them forever. Here every connection must finish each request head within `head_timeout` seconds of
connecting or of its previous response ending; otherwise it is closed.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadDeadlineProtocol(HttpToolsProtocol):
    head_timeout: float = 10.0

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
        error = {"message": f"malformed HTTP request: {msg}", "type": "invalid_request_error", "param": None, "code": "invalid_http"}
        body = orjson.dumps({"error": error})
        head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % len(body) + body)
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)


def head_deadline_protocol(head_timeout: float) -> type[HeadDeadlineProtocol]:
    """The protocol class for uvicorn.Config(http=...), with this deadline."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": head_timeout})
