"""Who may call what: the API key for every route not marked open, and which browser pages on other origins may
call the server at all (ALLOWED_ORIGINS, see Settings.cors_origins) and read its answers (CORS)."""

from __future__ import annotations

import hmac

from api.asgi import Headers
from api.errors import ApiError
from api.request import Request
from api.responses import Response

#: Headers a page on another origin may read: the ones the playground and browser clients use.
EXPOSED_HEADERS = b"x-request-id, x-sample-rate, x-voice"
#: Methods that make the server do no work: a page on another origin may send them (it cannot read the answer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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

    def refuse_foreign_origin(self, request: Request) -> None:
        """403 for a POST a browser page on another origin sent, unless ALLOWED_ORIGINS lets that origin in.

        CORS alone only hides the answer: a page may still POST a text/plain body without a preflight and make
        the server synthesise for it. Browsers mark every such request with Origin (and Sec-Fetch-Site); other
        clients send neither, and the server's own pages (the playground) are same-origin. A GET does no work
        and its answer stays unreadable to the page without CORS headers, so it is answered as usual.
        """
        origin = request.header(b"origin")
        if (
            request.method in SAFE_METHODS
            or origin is None
            or "*" in self.origins
            or origin in self.origins
            or self.is_same_origin(request, origin)
        ):
            return
        raise ApiError(
            403,
            f"requests from web pages on {origin} are refused: ALLOWED_ORIGINS does not list that origin "
            f"(to let a browser client there call this server, set ALLOWED_ORIGINS={origin})",
            code="origin_not_allowed",
        )

    @staticmethod
    def is_same_origin(request: Request, origin: str) -> bool:
        """Whether the page that sent the request was served by this server (by what it says in Host)."""
        fetch_site = request.header(b"sec-fetch-site")
        if fetch_site is not None:
            return fetch_site.strip().lower() in ("same-origin", "none")  # "none": the user's own action
        _, _, origin_host = origin.partition("://")
        host = request.header(b"host")
        return bool(origin_host) and host is not None and origin_host.lower() == host.strip().lower()

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
