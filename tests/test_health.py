"""Readiness (/health, draining), liveness (/livez) and HEAD, through the whole application in this process.

No voices are loaded, so the application stays "loading"; tests/test_health_e2e.py checks the same on a real server
with raw sockets, and tests/test_drain_e2e.py the drain after a real SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import api.voices
from api.app import Application
from api.errors import ApiError
from settings import Settings
from tests.helpers import asgi_call


def call(app: Application, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request: its status, headers (later values win) and every body byte the application sent."""
    status, received, body = asgi_call(app, method, path, headers)
    return status, dict(received), body


def application(tmp_path: Path, **settings: object) -> Application:
    return Application(Settings(**settings), tmp_path / "GenieData", [])  # type: ignore[arg-type]


def test_liveness_is_200_while_loading_and_while_draining_and_open_without_the_key(tmp_path: Path) -> None:
    app = application(tmp_path, api_key="secret")
    status, _, body = call(app, "GET", "/livez")
    assert (status, json.loads(body)) == (200, {"status": "alive"})
    assert call(app, "GET", "/health")[0] == 503  # loading: not ready, but alive
    app.draining = True
    status, _, body = call(app, "GET", "/livez")
    assert (status, json.loads(body)) == (200, {"status": "alive"})


def test_health_says_draining_and_every_answer_closes_its_connection_while_draining(tmp_path: Path) -> None:
    app = application(tmp_path)
    status, headers, body = call(app, "GET", "/health")
    assert (status, json.loads(body)["status"]) == (503, "loading")
    assert "connection" not in headers
    app.draining = True
    status, headers, body = call(app, "GET", "/health")
    assert status == 503 and json.loads(body) == {"status": "draining", "models": [], "api_key_required": False}
    assert headers["connection"] == "close"
    for method, path in [("GET", "/v1/models"), ("GET", "/nowhere"), ("HEAD", "/livez")]:
        assert call(app, method, path)[1]["connection"] == "close", (method, path)


def test_head_is_the_get_without_its_body(tmp_path: Path) -> None:
    app = application(tmp_path)
    for path in ["/health", "/livez", "/v1/models", "/v1/audio/voices", "/", "/openapi.json", "/v1/models/nope"]:
        get_status, get_headers, get_body = call(app, "GET", path)
        head_status, head_headers, head_body = call(app, "HEAD", path)
        assert head_status == get_status, path
        assert head_body == b"", path
        assert int(head_headers["content-length"]) == len(get_body) > 0, path
        differ = {name for name in get_headers if get_headers[name] != head_headers.get(name)}
        assert differ == {"x-request-id"}, (path, differ)


def test_head_where_get_is_not_answered_is_a_405_that_allows_head_only_with_get(tmp_path: Path) -> None:
    app = application(tmp_path)
    status, headers, body = call(app, "HEAD", "/v1/audio/speech")
    assert (status, headers["allow"], body) == (405, "POST", b"")
    assert int(headers["content-length"]) > 0  # the GET-like answer's length: the error body, not sent
    status, headers, body = call(app, "DELETE", "/v1/models")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert call(app, "HEAD", "/nowhere")[0] == 404


def test_a_cors_preflight_allows_head(tmp_path: Path) -> None:
    app = application(tmp_path)
    status, headers, _ = call(app, "OPTIONS", "/health", {"origin": "https://a.example", "access-control-request-method": "HEAD"})
    assert status == 204
    assert headers["access-control-allow-methods"] == "GET, HEAD, POST, OPTIONS"


def test_a_failed_load_turns_liveness_and_readiness_to_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `uvicorn server:app` shows an orchestrator (python server.py exits 1 as well: tests/test_startup_failures_e2e.py)."""

    def broken_genie_data(*args: object, **kwargs: object) -> object:
        raise RuntimeError("GenieData model speaker_encoder.onnx does not load")

    monkeypatch.setattr(api.voices, "load_voices", broken_genie_data)
    app = application(tmp_path)
    asyncio.run(app.voices.load([], tmp_path / "GenieData", 1, tmp_path / "models"))
    reason = "RuntimeError: GenieData model speaker_encoder.onnx does not load"
    status, _, body = call(app, "GET", "/livez")
    assert (status, json.loads(body)) == (503, {"status": "failed", "reason": reason})
    status, _, body = call(app, "GET", "/health")
    assert status == 503 and json.loads(body)["status"] == "failed" and json.loads(body)["reason"] == reason
    with pytest.raises(ApiError) as refused:  # a speech request: 503, not a lookup in an empty registry (404)
        app.voices.ready()
    assert (refused.value.status, refused.value.code) == (503, "startup_failed")
