"""api/routing.py's lookup on a small table: an exact path before a parameterised one, 404 and 405 with `Allow`,
HEAD answered by GET, and the metrics label of any path (the real table is checked against the OpenAPI document
in tests/test_openapi.py)."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.request import Request
from api.routing import Route, RouteTable


async def handler(request: Request) -> None:  # never called: the lookup only
    raise AssertionError


TABLE = RouteTable(
    [
        Route("/v1/models", "GET", handler),
        Route("/v1/models/special", "GET", handler),
        Route("/v1/models/{id}", "GET", handler),
        Route("/v1/models/{id}", "DELETE", handler),
        Route("/v1/audio/speech", "POST", handler),
    ]
)


def request(method: str, path: str) -> Request:
    return Request({"type": "http", "method": method, "path": path, "headers": []}, receive=None, client="10.0.0.1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/models", "/v1/models"),
        ("/v1/models/special", "/v1/models/special"),  # exact, though it starts with the parameterised prefix
        ("/v1/models/demo", "/v1/models/{id}"),
        ("/v1/models/a/b", "/v1/models/{id}"),  # the parameter takes the rest of the path
        ("/v1/audio/speech", "/v1/audio/speech"),
        ("/v1/audio", "other"),
        ("/", "other"),
    ],
)
def test_endpoint_is_the_template_the_path_falls_under(path: str, template: str) -> None:
    assert TABLE.endpoint(path) == template


def test_an_exact_path_is_matched_before_a_parameterised_one() -> None:
    assert TABLE.match(request("GET", "/v1/models/special")) is TABLE.routes[1]
    with pytest.raises(ApiError) as refused:  # not the {id} route's DELETE: the exact path has no DELETE
        TABLE.match(request("DELETE", "/v1/models/special"))
    assert refused.value.status == 405 and (b"allow", b"GET, HEAD") in refused.value.headers


def test_a_parameterised_path_sets_its_parameter() -> None:
    for method, route in (("GET", TABLE.routes[2]), ("HEAD", TABLE.routes[2]), ("DELETE", TABLE.routes[3])):
        matched = request(method, "/v1/models/demo/")  # one trailing slash dropped
        assert TABLE.match(matched) is route and matched.path_params == {"id": "demo"}


def test_no_route_is_404_and_a_wrong_method_405_with_allow() -> None:
    with pytest.raises(ApiError) as missing:
        TABLE.match(request("GET", "/v1/audio"))
    assert missing.value.status == 404
    with pytest.raises(ApiError) as wrong:
        TABLE.match(request("PUT", "/v1/models/demo"))
    assert wrong.value.status == 405 and (b"allow", b"DELETE, GET, HEAD") in wrong.value.headers
    with pytest.raises(ApiError) as get:
        TABLE.match(request("GET", "/v1/audio/speech"))
    assert (b"allow", b"POST") in get.value.headers
