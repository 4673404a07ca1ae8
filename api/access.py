"""Who may call what: the API key for every route not marked open, and CORS for browsers on other origins."""

from __future__ import annotations

import hmac

from api.asgi import Headers
from api.errors import ApiError
from api.request import Request
from api.responses import Response

#: Headers a page on another origin may read: the ones the playground and browser clients use.
EXPOSED_HEADERS = b"x-request-id, x-sample-rate, x-voice"


class Access:
    def __init__(self, api_key: str, allowed_origins: str) -> None:
        self.api_key = api_key
        self.origins = {origin.strip() for origin in allowed_origins.split(",") if origin.strip()}

    def authorize(self, request: Request) -> None:
        """401 unless API_KEY is unset or the request sends it as a bearer token (compared in constant time)."""
        if not self.api_key:
            return
        scheme, _, token = (request.header(b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <API_KEY>'",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b"Bearer")],
            )

    def cors_headers(self, request: Request) -> Headers:
        """What every response to this request adds so that a browser page on its origin may read it."""
        origin = request.header(b"origin")
        if origin is None:
            return []
        if "*" in self.origins:
            allowed = "*"
        elif origin in self.origins:
            allowed = origin
        else:
            return []
        return [(b"access-control-allow-origin", allowed.encode()), (b"access-control-expose-headers", EXPOSED_HEADERS)]

    def vary_headers(self) -> Headers:
        """`Vary: Origin` on every response when the answer depends on the origin (a list, not "*").

        Also on responses to requests without an Origin: a shared cache must not serve a copy stored for one
        origin (or for none) to a page on another.
        """
        if not self.origins or "*" in self.origins:
            return []
        return [(b"vary", b"Origin")]

    @staticmethod
    def is_preflight(request: Request) -> bool:
        return request.method == "OPTIONS" and bool(request.header(b"access-control-request-method"))

    @staticmethod
    def preflight(request: Request, methods: list[str]) -> Response:
        """The answer to a CORS preflight: these methods, the headers asked for, cached for ten minutes."""
        requested = request.header(b"access-control-request-headers") or "authorization, content-type"
        headers = [
            *request.response_headers,
            (b"access-control-allow-methods", ", ".join([*methods, "OPTIONS"]).encode()),
            (b"access-control-allow-headers", requested.encode("latin-1")),
            (b"access-control-max-age", b"600"),
        ]
        return Response(b"", 204, headers)
