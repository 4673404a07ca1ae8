"""Errors in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, and the one table that maps the
exceptions of the engine and of the server's limits to them."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from api.asgi import BodyTimeout, BodyTooLarge, Headers
from api.rate_limit import RateLimited
from engine.interface import LineClosed, NothingToSay, QueueFull, TooMuchAudio, UnreadableText


def error_body(message: str, type: str, code: str | None, param: str | None = None) -> bytes:
    """The JSON every error carries; OpenAI's SDKs read `message` and `code` from it."""
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


class ApiError(Exception):
    """A request this server refuses, with the status and error body to answer it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Headers | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or ("server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or []
        self.cause = cause  # a 429's cause for gsv_rejected_total: server_busy, queue_timeout, client_limit, rate_limit

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _retry_after(seconds: int) -> Headers:
    return [(b"retry-after", str(seconds).encode())]


def _queue_full(full: QueueFull) -> ApiError:
    code = "rate_limit_exceeded"
    if full.cause == "queue_timeout":
        message = (
            f"the server is busy; this request waited {full.waited_s:.0f} s in line without getting a place, "
            f"the longest a request may wait here; retry after {full.retry_after} s"
        )
    elif full.ahead:
        message = (
            f"the server is busy; {full.ahead} requests are already waiting for a place, about {full.expected_s:.0f} s "
            f"of waiting, longer than a request may wait here; retry after {full.retry_after} s"
        )
    elif full.client_limit is None:
        message = f"the server is busy; retry after {full.retry_after} s"
    else:
        message = (
            f"this client already has {full.client_limit} speech requests in progress or waiting, the most one address may have; "
            f"retry after {full.retry_after} s"
        )
        code = "too_many_concurrent_requests"
    return ApiError(429, message, type="rate_limit_error", code=code, headers=_retry_after(full.retry_after), cause=full.cause)


#: Exceptions raised below the HTTP layer (the engine, the limits) -> the error a client gets for them.
EXCEPTION_TABLE: dict[type[Exception], Callable[[Exception], ApiError]] = {
    QueueFull: _queue_full,
    LineClosed: lambda closed: shutting_down(),
    RateLimited: lambda limited: ApiError(
        429,
        f"too many requests from {limited.client}: at most {limited.per_minute} per minute; retry after {limited.wait} s",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers=_retry_after(limited.wait),
        cause="rate_limit",
    ),
    NothingToSay: lambda nothing: bad_request(str(nothing), "input", "nothing_to_say"),
    TooMuchAudio: lambda much: bad_request(
        f"the input is too long for one request: even spoken fast its phonemes make at least {much.likely_seconds:.0f} s "
        f"of audio at speed 1, and this server makes at most {much.max_seconds:.0f} s at speed 1 for one request "
        "(MAX_AUDIO_SECONDS, whatever the speed); "
        "send the text in shorter requests",
        "input",
        "audio_too_long",
    ),
    UnreadableText: lambda unreadable: bad_request(
        f"{unreadable}; nothing was spoken rather than a part left out: spell that part differently (the log has the "
        "G2P error; please report the text)",
        "input",
        "unreadable_input",
    ),
    BodyTooLarge: lambda large: ApiError(413, f"the request body is larger than {large.limit} bytes", code="request_too_large"),
    BodyTimeout: lambda slow: ApiError(408, f"the request body did not arrive within {slow.seconds} s", code="request_timeout"),
}


def as_api_error(error: Exception) -> ApiError | None:
    """The client's error for `error`, or None for an unexpected one (a bug: the caller answers 500)."""
    if isinstance(error, ApiError):
        return error
    for kind, translate in EXCEPTION_TABLE.items():
        if isinstance(error, kind):
            return translate(error)
    return None


def internal_error(request_id: str) -> ApiError:
    """The answer to an unexpected exception: no details (they are in the log, under the request id)."""
    return ApiError(
        500,
        f"the server failed to handle this request; its log has the details under request id {request_id}",
        code="internal_error",
    )


def shutting_down() -> ApiError:
    """The answer to a request still unanswered when the server stops (SIGTERM, then SHUTDOWN_TIMEOUT)."""
    message = "the server is shutting down; retry in a moment"
    return ApiError(503, message, code="shutting_down", headers=[(b"connection", b"close")])
