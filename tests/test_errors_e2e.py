"""Every error path over real HTTP: status, OpenAI error shape, and the exception the SDK raises."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.helpers import LONG, SHORT, SPEECH
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def sdk(server: ServerProcess, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": SHORT}, "model", "missing_required_parameter"),
        ({"model": "demo"}, "input", "missing_required_parameter"),
        ({"model": "demo", "input": 42}, "input", "invalid_type"),
        ({"model": "demo", "input": "   "}, "input", "invalid_value"),
        ({"model": "demo", "input": "あ" * 4097}, "input", "string_above_max_length"),
        ({"model": "demo", "input": SHORT, "speed": 4.5}, "speed", "invalid_value"),
        ({"model": "demo", "input": SHORT, "speed": "fast"}, "speed", "invalid_type"),
        ({"model": "demo", "input": SHORT, "voice": 7}, "voice", "invalid_type"),
        ({"model": "demo", "input": SHORT, "response_format": "ogg"}, "response_format", "invalid_value"),
        ({"model": "demo", "input": SHORT, "stream_format": "websocket"}, "stream_format", "invalid_value"),
        ({"model": "demo", "input": SHORT, "voice": "no-such-style"}, "voice", "voice_not_found"),
        ({"model": "demo", "input": SHORT, "voice": "demo/no-such-style"}, "voice", "voice_not_found"),
        ({"model": "demo", "input": "😀🎉"}, "input", "nothing_to_say"),
    ],
)
def test_invalid_bodies_are_400(server: ServerProcess, body: dict, param: str, code: str) -> None:
    response = httpx.post(f"{server.base_url}{SPEECH}", json=body, timeout=30)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


def test_sdk_raises_bad_request_for_invalid_input(server: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).audio.speech.create(model="demo", voice="alloy", input="x", speed=0.1)
    assert caught.value.status_code == 400 and caught.value.body["param"] == "speed"
    with pytest.raises(openai.BadRequestError):
        sdk(server).audio.speech.create(model="demo", voice="alloy", input="🙂")


def test_malformed_json_and_non_object(server: ServerProcess) -> None:
    for raw in (b"{not json", b"[1, 2]", b""):
        response = httpx.post(f"{server.base_url}{SPEECH}", content=raw, headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_json"


def test_wrong_content_type_is_415(server: ServerProcess) -> None:
    response = httpx.post(f"{server.base_url}{SPEECH}", data={"model": "demo", "input": "x"}, timeout=30)
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_body_over_the_limit_is_413(server: ServerProcess) -> None:
    raw = b'{"model": "demo", "input": "' + b"a" * 140000 + b'"}'
    response = httpx.post(f"{server.base_url}{SPEECH}", content=raw, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    def body():  # no Content-Length: the server must count while reading
        yield b'{"model": "demo", "input": "'
        for _ in range(150):
            yield b"a" * 1000
        yield b'"}'

    response = httpx.post(f"{server.base_url}{SPEECH}", content=body(), headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413


def test_wrong_method_is_405_with_allow(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}{SPEECH}")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert error_of(response)["code"] == "method_not_allowed"
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(server).get("/audio/speech", cast_to=object)
    assert caught.value.status_code == 405


def test_unknown_path_is_404(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["type"] == "invalid_request_error"


def test_cors_preflight_and_headers(server: ServerProcess) -> None:
    preflight = httpx.options(
        f"{server.base_url}{SPEECH}",
        headers={
            "origin": "https://chat.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    # Without API_KEY and ALLOWED_ORIGINS no other origin may read answers (issue 23; tests/test_origins.py).
    assert "access-control-allow-origin" not in preflight.headers
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    response = httpx.get(f"{server.base_url}/v1/models", headers={"origin": "https://chat.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_loading_state_is_503(strict_server: ServerProcess) -> None:
    seen = dict((kind, (status, body)) for kind, status, body in strict_server.seen_while_loading)
    assert seen["health"][0] == 503 and seen["health"][1]["status"] == "loading"
    assert seen["speech"][0] == 503 and seen["speech"][1]["error"]["code"] == "loading"


def test_api_key_is_required_when_set(strict_server: ServerProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(strict_server, key="wrong").audio.speech.create(model="demo", voice="alloy", input=SHORT)
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    missing = httpx.post(f"{strict_server.base_url}{SPEECH}", json={"model": "demo", "input": SHORT})
    assert missing.status_code == 401
    empty_bearer = httpx.get(
        f"{strict_server.base_url}/v1/models", headers={"authorization": "Bearer"}
    )  # "Bearer " once trailing space is stripped
    assert empty_bearer.status_code == 401
    # Wrong keys that share a prefix with the real one: the whole token must match, not its start.
    for wrong in ("test-secret-key-x", "test-secret-ke", "test-secret-key x"):
        response = httpx.get(f"{strict_server.base_url}/v1/models", headers={"authorization": f"Bearer {wrong}"})
        assert response.status_code == 401, wrong
        assert error_of(response)["code"] == "invalid_api_key" and response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{strict_server.base_url}/health").status_code == 200
    audio = sdk(strict_server, key="test-secret-key").audio.speech.create(
        model="demo", voice="alloy", input=SHORT, response_format="wav"
    )
    assert audio.content[:4] == b"RIFF"
    assert "test-secret-key" not in strict_server.log()


def test_cors_allowed_origins_setting(strict_server: ServerProcess) -> None:
    allowed = httpx.get(f"{strict_server.base_url}/health", headers={"origin": "https://app.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.get(f"{strict_server.base_url}/health", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_busy_server_answers_429_with_retry_after(strict_server: ServerProcess) -> None:
    headers = {"authorization": "Bearer test-secret-key"}
    with httpx.stream(
        "POST", f"{strict_server.base_url}{SPEECH}", json={"model": "demo", "input": LONG}, headers=headers, timeout=120
    ) as first:
        assert first.status_code == 200
        with pytest.raises(openai.RateLimitError) as caught:
            sdk(strict_server, key="test-secret-key").audio.speech.create(model="demo", voice="alloy", input=SHORT)
        assert caught.value.body["code"] == "rate_limit_exceeded"
        retry_after = caught.value.response.headers["retry-after"]
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 120
        first.read()
    strict_server.wait_idle()
    assert (
        httpx.post(
            f"{strict_server.base_url}{SPEECH}", json={"model": "demo", "input": SHORT}, headers=headers, timeout=60
        ).status_code
        == 200
    )
