"""A bug anywhere before the first byte is a 500 in OpenAI's shape with the request id, and a traceback in the log;
after the first byte it breaks the connection. Faults are injected into the real application, served by uvicorn
in this process on the demo voice, and seen by real clients (httpx and the OpenAI SDK)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import MEDIUM, SHORT, demo_application, wait_for
from tests.server_process import serve_in_thread

pytestmark = pytest.mark.e2e


@dataclass
class InProcessServer:
    url: str
    app: object  # api.app.Application


@pytest.fixture(scope="module")
def served(demo_root: Path) -> Iterator[InProcessServer]:
    from settings import Settings

    app = demo_application(demo_root, Settings(workers=1, queue_size=4))
    with serve_in_thread(app) as url:
        yield InProcessServer(url, app)


class InjectedFault(RuntimeError):
    pass


def fail(*args: object, **kwargs: object) -> None:
    raise InjectedFault("injected fault")


def stages(served: InProcessServer) -> dict[str, tuple[object, str]]:
    """Stage before the first byte -> (object, attribute) whose call is made to fail."""
    import api.speech

    return {
        "voice choice": (served.app.voices, "choose"),
        "planning": (api.speech, "plan_speech"),
        "encoder construction": (api.speech, "AudioOutput"),
    }


@pytest.mark.parametrize("stage", ["voice choice", "planning", "encoder construction"])
def test_a_fault_before_the_first_byte_is_an_openai_shaped_500(
    served: InProcessServer, stage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target, attribute = stages(served)[stage]
    monkeypatch.setattr(target, attribute, fail)
    with caplog.at_level(logging.ERROR, logger="gsv.server"):
        response = httpx.post(f"{served.url}/v1/audio/speech", json={"model": "demo", "input": SHORT}, timeout=60)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    request_id = response.headers["x-request-id"]
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("server_error", "internal_error", None)
    assert request_id in error["message"] and "injected" not in error["message"]  # details stay in the log
    logged = [record for record in caplog.records if request_id in record.getMessage()]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[0] is InjectedFault  # with its traceback
    assert served.app.scheduler.admission.requests_in_progress == 0  # an admitted request that failed gave its place back


def test_the_sdk_reads_the_500_as_a_server_error(served: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import api.speech

    monkeypatch.setattr(api.speech, "plan_speech", fail)
    sdk = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.audio.speech.create(model="demo", voice="alloy", input=SHORT, response_format="wav")
    request_id = caught.value.response.headers["x-request-id"]
    assert caught.value.body["code"] == "internal_error" and request_id in caught.value.body["message"]


def test_a_fault_in_a_small_endpoint_is_a_500_too(served: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(served.app.scheduler.slots), "jobs_running", property(fail))
    response = httpx.get(f"{served.url}/health", timeout=10)
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert response.json()["error"]["message"].endswith(response.headers["x-request-id"])


def test_after_the_first_byte_a_fault_breaks_the_connection(served: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The encoder fails on the second segment: the client has the 200 and some audio, then a broken transfer."""
    from wavstream.output import AudioOutput

    real_push = AudioOutput.push
    pushed = []

    def push_then_fail(self: AudioOutput, audio: object) -> bytes:
        pushed.append(1)
        if len(pushed) == 2:
            raise InjectedFault("encoder failed mid-stream")
        return real_push(self, audio)

    monkeypatch.setattr(AudioOutput, "push", push_then_fail)
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream(
            "POST", f"{served.url}/v1/audio/speech", json={"model": "demo", "input": MEDIUM}, timeout=60
        ) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += chunk
    assert received[:4] == b"RIFF" and len(received) > 44
    wait_for(lambda: served.app.scheduler.admission.requests_in_progress == 0, 10, "the failed request's place given back")
