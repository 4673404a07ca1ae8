"""The route table as data: each route's path, method, handler and whether it is open without the API key.

Everything that depends on the routes is derived from the table: the 405 and its `Allow`, the methods a CORS
preflight allows, which routes need the API key, and the OpenAPI agreement test (tests/test_openapi.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property

from api.asgi import ASGIApp
from api.errors import ApiError
from api.request import Request

Handler = Callable[[Request], Awaitable[ASGIApp]]


@dataclass(frozen=True)
class Route:
    """`path` is exact, or ends in one parameter ("/v1/models/{id}") that takes the rest of the path."""

    path: str
    method: str
    handler: Handler
    open: bool = False  # served without the API key

    @cached_property
    def prefix(self) -> str | None:
        """For a parameterised path, what precedes the parameter; None for an exact path."""
        return self.path[: self.path.index("{")] if self.path.endswith("}") else None

    @cached_property
    def parameter(self) -> str:
        return self.path[self.path.index("{") + 1 : -1]


def answered_methods(routes: list[Route]) -> list[str]:
    """The methods these routes answer, sorted: each route's own, and HEAD wherever GET is."""
    methods = {route.method for route in routes}
    return sorted(methods | {"HEAD"} if "GET" in methods else methods)


class RouteTable:
    """HEAD is answered by the GET route of its path (the application sends the GET's status and headers, no body):
    load balancers, uptime monitors and some probes check health with HEAD."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.methods = answered_methods(routes)  # for CORS preflights

    def on_path(self, path: str) -> list[Route]:
        """The routes `path` falls under, whatever their method: those of that exact path, else the parameterised
        ones whose prefix it starts with; empty when none."""
        exact = [route for route in self.routes if route.path == path]
        return exact or [route for route in self.routes if route.prefix is not None and path.startswith(route.prefix)]

    def endpoint(self, path: str) -> str:
        """The route template `path` falls under, whatever the method, or "other": a bounded metrics label."""
        on_path = self.on_path(path)
        return on_path[0].path if on_path else "other"

    def match(self, request: Request) -> Route:
        """The route for the request, with its path parameter set on it; 404 or 405 (with `Allow`) otherwise."""
        path = request.path
        on_path = self.on_path(path)
        if not on_path:
            raise ApiError(404, f"no route for {request.method} {path}", code="not_found")
        method = "GET" if request.method == "HEAD" else request.method
        for route in on_path:
            if route.method == method:
                if route.prefix is not None:
                    request.path_params[route.parameter] = path[len(route.prefix) :]
                return route
        allow = ", ".join(answered_methods(on_path)).encode()
        raise ApiError(405, f"{request.method} is not allowed on {path}", code="method_not_allowed", headers=[(b"allow", allow)])
