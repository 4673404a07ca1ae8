"""End to end: the waiting line before the 200 on real servers, with real clients.

`one_place` has one place (WORKERS=1, QUEUE_SIZE=0) and a long MAX_QUEUE_WAIT, so requests always find room in line
however slow the machine. `five_places` (WORKERS=1, QUEUE_SIZE=4, MAX_QUEUE_WAIT=3) finishes no request before its
last test: its time per place is then the scheduler's starting guess, 5 s per request / 5 places = 1 s, so its
expected waits are known exactly (1, 2, 3 s for the first three in line; the fourth, 4 s, is refused).
A raw socket that asks for a long text and reads nothing holds a place until the test closes it (a small receive
buffer, no read-pace limit). Every client connects from a loopback address of its own, as different users do.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LONG, SHORT, speech_socket, start_demo_server, wait_for, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

HOLD = {"MIN_READ_RATE": "0", "SEND_TIMEOUT": "300", "SHUTDOWN_TIMEOUT": "20"}
SHORT_WAIT = 3


@pytest.fixture(scope="module")
def one_place(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"WORKERS": "1", "QUEUE_SIZE": "0", "MAX_QUEUE_WAIT": "120", **HOLD}
    server = start_demo_server("one-place", tmp_path_factory.mktemp("empty-models"), env)
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def five_places(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"WORKERS": "1", "QUEUE_SIZE": "4", "MAX_QUEUE_WAIT": str(SHORT_WAIT), **HOLD}
    server = start_demo_server("five-places", tmp_path_factory.mktemp("empty-models"), env)
    yield server
    server.stop()


def address(number: int) -> str:
    return f"127.0.3.{number}"


def hold_the_place(server: ServerProcess, number: int = 250) -> socket.socket:
    holder = speech_socket(server, LONG * 2, address(number), receive_buffer=4096)
    assert holder.recv(12) == b"HTTP/1.1 200"
    return holder


def log_lines(server: ServerProcess, number: int) -> list[str]:
    """The server's log lines about requests from `address(number)` (not from 127.0.3.250 for number 2)."""
    pattern = re.compile(rf"client={re.escape(address(number))}(\s|$)")
    return [line for line in server.log().splitlines() if pattern.search(line)]


def log_line(server: ServerProcess, number: int) -> str:
    """The first log line about a request from `address(number)`, waiting for it (it follows the request's end)."""
    wait_for(lambda: bool(log_lines(server, number)), 10, f"a log line for {address(number)}")
    return log_lines(server, number)[0]


def queued(server: ServerProcess) -> int:
    return server.health()["synthesis"]["queued"]


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """One sample of a real scrape of /metrics, parsed with prometheus_client's own parser."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name}{labels} in the scrape")


class Waiter(threading.Thread):
    """A client that sends one request and records when its answer's status line came, and what it was."""

    def __init__(self, server: ServerProcess, number: int, text: str = SHORT) -> None:
        super().__init__(daemon=True)
        self.server, self.number, self.text = server, number, text
        self.status: int | None = None
        self.answered_at = 0.0
        self.sent_at = 0.0
        self.response: httpx.Response | None = None

    def run(self) -> None:
        transport = httpx.HTTPTransport(local_address=address(self.number))
        with httpx.Client(transport=transport, timeout=120) as client:
            self.sent_at = time.monotonic()
            with client.stream(
                "POST", f"{self.server.base_url}/v1/audio/speech", json={"model": "demo", "input": self.text}
            ) as r:
                self.answered_at = time.monotonic()
                self.status = r.status_code
                r.read()
                self.response = r


def test_requests_beyond_the_places_wait_and_are_served_in_arrival_order(one_place: ServerProcess) -> None:
    one_place.wait_idle()
    assert (
        httpx.post(f"{one_place.base_url}/v1/audio/speech", json={"model": "demo", "input": SHORT}, timeout=120).status_code
        == 200
    )
    holder = hold_the_place(one_place)
    waiters = [Waiter(one_place, number) for number in range(1, 4)]
    try:
        for index, waiter in enumerate(waiters):
            waiter.start()
            wait_for(lambda index=index: queued(one_place) == index + 1, 10, f"request {index + 1} in line")
        assert all(waiter.status is None for waiter in waiters)  # no answer yet: they wait, holding their connections
        assert 3 <= metric(one_place, "gsv_queue_depth") <= 4  # the line, plus the holder's job if it waits for the worker
    finally:
        holder.close()  # the place frees: the line moves, oldest first
    for waiter in waiters:
        waiter.join(timeout=120)
    assert [waiter.status for waiter in waiters] == [200] * 3
    assert all(wav_info(waiter.response.content)[3] > 0 for waiter in waiters if waiter.response is not None)
    answered = [waiter.answered_at for waiter in waiters]
    assert answered == sorted(answered), "served out of arrival order"
    # The server's own log: each waited, and longer the later it came.
    waits = [float(re.search(r" queued_s=([0-9.]+) ", log_line(one_place, waiter.number)).group(1)) for waiter in waiters]
    assert all(wait > 0 for wait in waits) and waits == sorted(waits), waits
    assert queued(one_place) == 0


def test_a_client_that_hangs_up_while_waiting_leaves_the_line(one_place: ServerProcess) -> None:
    one_place.wait_idle()
    holder = hold_the_place(one_place)
    try:
        leaving = speech_socket(one_place, SHORT, address(20))
        wait_for(lambda: queued(one_place) == 1, 10, "the request in line")
        staying = Waiter(one_place, 21)
        staying.start()
        wait_for(lambda: queued(one_place) == 2, 10, "the second request in line")
        leaving.close()
        wait_for(lambda: queued(one_place) == 1, 5, "the line without the client that hung up")
    finally:
        holder.close()
    staying.join(timeout=120)
    assert staying.status == 200
    assert "outcome=disconnected_before_response" in log_line(one_place, 20)


def test_at_shutdown_requests_in_line_get_503_at_once(one_place: ServerProcess) -> None:
    """Last of `one_place`'s tests: it stops the server."""
    one_place.wait_idle()
    holder = hold_the_place(one_place)
    waiter = Waiter(one_place, 120)
    waiter.start()
    wait_for(lambda: queued(one_place) == 1, 10, "the request in line")
    stopped_at = time.monotonic()
    one_place.process.send_signal(signal.SIGTERM)
    waiter.join(timeout=15)
    assert waiter.status == 503 and waiter.response is not None
    assert waiter.answered_at - stopped_at < 5  # not at the end of SHUTDOWN_TIMEOUT (20 s)
    assert waiter.response.json()["error"]["code"] == "shutting_down"
    holder.close()
    one_place.process.wait(timeout=60)


def fill_places(server: ServerProcess) -> list[socket.socket]:
    holders = [hold_the_place(server, 240 + number) for number in range(server.health()["synthesis"]["workers"] + 4)]
    assert server.health()["synthesis"]["active_requests"] == 5
    return holders


def test_a_request_whose_expected_wait_is_too_long_gets_429_at_once_with_that_wait(five_places: ServerProcess) -> None:
    holders = fill_places(five_places)
    busy_before = metric(five_places, "gsv_rejected_total", cause="server_busy")
    timeouts_before = metric(five_places, "gsv_rejected_total", cause="queue_timeout")
    waiters = [Waiter(five_places, number) for number in range(30, 33)]
    try:
        for waiter in waiters:  # expected waits 1, 2 and 3 s: each joins the line
            waiter.start()
        wait_for(lambda: queued(five_places) == len(waiters), SHORT_WAIT, "three requests in line")
        started = time.monotonic()
        with httpx.Client(transport=httpx.HTTPTransport(local_address=address(33)), timeout=60) as newcomer:
            refused = newcomer.post(f"{five_places.base_url}/v1/audio/speech", json={"model": "demo", "input": SHORT})
        assert time.monotonic() - started < SHORT_WAIT  # at once, not after waiting
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "4"  # (3 ahead + 1) × 1 s per place
        error = refused.json()["error"]
        assert (error["code"], error["type"]) == ("rate_limit_exceeded", "rate_limit_error")
        assert "3 requests are already waiting for a place, about 4 s" in error["message"]
        assert "retry after 4 s" in error["message"]
        # Those let in wait MAX_QUEUE_WAIT, then get 429 with a fresh Retry-After: a newcomer's wait by then.
        for waiter in waiters:
            waiter.join(timeout=60)
            assert waiter.status == 429 and waiter.response is not None
            assert waiter.answered_at - waiter.sent_at >= SHORT_WAIT
            message = waiter.response.json()["error"]["message"]
            assert f"this request waited {SHORT_WAIT} s in line without getting a place" in message, message
            assert 1 <= int(waiter.response.headers["retry-after"]) <= 3
        # Each leaves the others behind it in line: a newcomer then waits 3, 2, then 1 place (1 s each).
        assert sorted(int(waiter.response.headers["retry-after"]) for waiter in waiters) == [1, 2, 3]
        assert queued(five_places) == 0
        assert metric(five_places, "gsv_rejected_total", cause="server_busy") == busy_before + 1
        assert metric(five_places, "gsv_rejected_total", cause="queue_timeout") == timeouts_before + 3
    finally:
        for holder in holders:
            holder.close()


def test_the_openai_sdk_refused_by_a_full_line_retries_and_is_served(five_places: ServerProcess) -> None:
    """Refused at once (the time per place is measured by now) or after MAX_QUEUE_WAIT in line: 429 either way."""
    five_places.wait_idle(timeout=60)
    holders = fill_places(five_places)
    result: dict[str, bytes] = {}

    def sdk_client() -> None:
        http_client = httpx.Client(transport=httpx.HTTPTransport(local_address=address(200)), timeout=120)
        sdk = openai.OpenAI(base_url=f"{five_places.base_url}/v1", api_key="unused", max_retries=8, http_client=http_client)
        result["audio"] = sdk.audio.speech.create(model="demo", voice="alloy", input=SHORT, response_format="wav").content

    sdk = threading.Thread(target=sdk_client, daemon=True)
    try:
        sdk.start()
        wait_for(lambda: bool(log_lines(five_places, 200)), 10 + SHORT_WAIT, "the SDK's first answer")
        assert "status=429" in log_line(five_places, 200)
    finally:
        for holder in holders:
            holder.close()  # places free: the line moves, and the SDK comes back after its Retry-After
    sdk.join(timeout=300)
    assert wav_info(result["audio"])[3] > 0
    wait_for(lambda: "outcome=ok" in log_lines(five_places, 200)[-1], 10, "the SDK's served request in the log")
    answers = log_lines(five_places, 200)
    assert "outcome=ok" in answers[-1] and all("status=429" in line for line in answers[:-1]), answers
