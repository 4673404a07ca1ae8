"""Request bodies at the edges, end to end over raw sockets: every byte is sent exactly as written here.

httpx would fix up what these tests need broken (it sets Content-Type and Content-Length, encodes JSON itself,
cannot send `Expect: 100-continue` or control chunk boundaries), so requests are written by hand and responses,
1xx included, parsed by hand. Every error must be OpenAI-shaped JSON with the right status and `code`, and no
request may leave a traceback in the server log.

Behaviour pinned here (decisions):
- A body without Content-Type is read as JSON, like `text/plain` (what fetch() sends for a string body);
  any other type without "json" in it is a 415.
- Duplicate keys: the last one wins (orjson, like Python's json and JavaScript's JSON.parse).
- Numbers a double cannot hold (1e400, 5000-digit integers) make the whole body invalid JSON (400 invalid_json),
  even in fields the server ignores; finite numbers out of range are a 400 on their field.
- Nesting deeper than orjson's limit (1024) is 400 invalid_json; shallower nesting where a string belongs is a
  400 invalid_type on that field.
- A leading UTF-8 byte order mark is ignored (RFC 8259 allows it; Windows tools write one); anything else that is
  not UTF-8 is 400 invalid_json.
- A Content-Length over MAX_BODY_BYTES is answered 413 as soon as the head is read, before any body byte (and
  without `100 Continue`). A chunked body is counted while it arrives and refused (413) as soon as it passes the
  limit. Any error sent before the body was read carries `Connection: close` and the server closes the connection:
  it will not read the rest, and must not take it (or, after `Expect: 100-continue`, the next request) for a body.
"""

from __future__ import annotations

import io
import json
import select
import socket
import uuid
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit

import pytest
import soundfile as sf

from tests.helpers import SPEECH
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

SPOKEN = "はい"  # short: every 200 here synthesises it
VALID = json.dumps({"model": "demo", "input": SPOKEN}, ensure_ascii=False).encode()


def settings():
    """The server inherits this process's environment (conftest), so it reads the same limits."""
    from settings import Settings

    return Settings.from_env()


# ---- a raw HTTP/1.1 client ---------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int] = field(default_factory=list)  # 1xx statuses received before this one

    def json(self) -> dict:
        return json.loads(self.body)


class Connection:
    """One TCP connection to the server: bytes go out exactly as given; responses are parsed by hand."""

    def __init__(self, server: ServerProcess, timeout: float = 120) -> None:
        url = urlsplit(server.base_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answered_within(self, seconds: float) -> bool:
        """Whether the server has sent something (only meaningful before anything was read from it)."""
        return bool(select.select([self.sock], [], [], seconds)[0])

    def read_head(self) -> tuple[int, dict[str, str]]:
        status_line = self.reader.readline()
        assert status_line.startswith(b"HTTP/1.1 "), f"not a status line: {status_line!r}"
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_response(self) -> Response:
        interim: list[int] = []
        status, headers = self.read_head()
        while 100 <= status < 200:
            interim.append(status)
            status, headers = self.read_head()
        if "content-length" in headers:
            body = self.reader.read(int(headers["content-length"]))
            assert len(body) == int(headers["content-length"]), "connection closed inside the body"
        elif headers.get("transfer-encoding") == "chunked":
            body = self.read_chunked()
        else:
            body = self.reader.read()
        return Response(status, headers, body, interim)

    def read_chunked(self) -> bytes:
        """The whole chunked body; a stream broken before its last chunk fails the test."""
        parts = []
        while True:
            size_line = self.reader.readline()
            assert size_line.endswith(b"\r\n"), f"stream broken before its last chunk (after {sum(map(len, parts))} bytes)"
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while self.reader.readline() not in (b"\r\n", b""):
                    pass
                return b"".join(parts)
            chunk = self.reader.read(size)
            assert len(chunk) == size and self.reader.read(2) == b"\r\n", "stream broken inside a chunk"
            parts.append(chunk)


def head(headers: list[tuple[str, str]], path: str = SPEECH, method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def request_id() -> str:
    return f"edge-{uuid.uuid4().hex[:12]}"


def post(server: ServerProcess, body: bytes, content_type: str | None = "application/json") -> Response:
    """One POST with a Content-Length, on its own connection; the server log must stay free of tracebacks."""
    rid = request_id()
    headers = [("Content-Length", str(len(body))), ("Connection", "close"), ("X-Request-Id", rid)]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    before = len(server.log())
    with Connection(server) as connection:
        connection.send(head(headers) + body)
        response = connection.read_response()
    assert f"request_id={response.headers['x-request-id']} " in server.log_line(f"client_request_id={rid}", timeout=30)
    assert_clean_log(server.log()[before:])
    return response


def assert_clean_log(log: str) -> None:
    for sign in ("Traceback", "RecursionError", "Exception in ASGI application", "synthesis failed"):
        assert sign not in log, f"{sign!r} in the server log:\n{log[-4000:]}"


def error(response: Response, status: int, code: str, param: str | None = None) -> dict:
    """The OpenAI error body, checked: status, content type, exact shape, type, code and param."""
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}
    found = payload["error"]
    assert (found["type"], found["code"], found["param"]) == ("invalid_request_error", code, param), found
    assert isinstance(found["message"], str) and found["message"]
    return found


def audio(response: Response) -> float:
    """Seconds of the WAV: 200, audio/wav, decodable, every byte after the header whole samples."""
    assert response.status == 200, (response.status, response.body[:300])
    assert response.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(response.body), dtype="int16")
    assert rate == 32000 and samples.ndim == 1 and samples.size > 0
    assert samples.size * 2 == len(response.body) - 44
    return samples.size / rate


def speech_body(**fields: object) -> bytes:
    return json.dumps({"model": "demo", "input": SPOKEN, **fields}, ensure_ascii=False).encode()


# ---- not JSON, not an object ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"model=demo&input=hi",
        b"hello",
        b"{'model': 'demo', 'input': 'hi'}",
        b'{"model": "demo", "input": "hi"',
        b'{"model": "demo", "input": "hi"}}',
        b'{"model": "demo", "input": "hi",}',
        b'{"model": "demo", "input": "hi", "speed": NaN}',
        b'/* comment */ {"model": "demo", "input": "hi"}',
        b"",
        b"  \r\n\t ",
    ],
    ids=["form", "word", "single_quotes", "unclosed", "extra_brace", "trailing_comma", "nan", "comment", "empty", "whitespace"],
)
def test_a_body_that_is_not_json_is_400(server: ServerProcess, body: bytes) -> None:
    found = error(post(server, body), 400, "invalid_json")
    assert found["message"].startswith("the body is not valid JSON")


@pytest.mark.parametrize(
    "body",
    [b"[]", b'[{"model": "demo", "input": "hi"}]', b'"demo"', b"42", b"-0.0", b"null", b"true"],
    ids=["empty_array", "array_of_the_object", "string", "number", "negative_zero", "null", "true"],
)
def test_json_that_is_not_an_object_is_400(server: ServerProcess, body: bytes) -> None:
    assert error(post(server, body), 400, "invalid_json")["message"] == "the body must be a JSON object"


# ---- content types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/html",
        "application/xml",
        "audio/wav",
        "application/octet-stream",
    ],
)
def test_a_content_type_without_json_is_415(server: ServerProcess, content_type: str) -> None:
    assert "application/json" in error(post(server, VALID, content_type), 415, "unsupported_media_type")["message"]


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "APPLICATION/JSON", "text/plain;charset=UTF-8", "application/vnd.api+json"],
)
def test_json_and_plain_text_content_types_are_read_as_json(server: ServerProcess, content_type: str) -> None:
    """Parsed, not refused: the unknown voice is only found by reading the body."""
    body = json.dumps({"model": "no-such-voice", "input": SPOKEN}).encode()
    assert "no-such-voice" in error(post(server, body, content_type), 404, "model_not_found", "model")["message"]


def test_a_body_without_content_type_is_read_as_json(server: ServerProcess) -> None:
    assert audio(post(server, VALID, content_type=None)) > 0


# ---- duplicate keys, numbers, nesting --------------------------------------------------------------------------


def test_duplicate_keys_the_last_one_wins(server: ServerProcess) -> None:
    found = error(post(server, b'{"model": "demo", "model": "x", "input": "hi"}'), 404, "model_not_found", "model")
    assert "'x'" in found["message"]
    # "demo" last: the voice is found, and the input (also given twice) is the last one, the emoji
    refused = post(server, '{"model": "x", "model": "demo", "input": "はい", "input": "😀"}'.encode())
    assert "nothing pronounceable" in error(refused, 400, "nothing_to_say", "input")["message"]
    assert audio(post(server, '{"model": "demo", "input": "😀", "input": "はい"}'.encode())) > 0


HUGE = b"1" + b"0" * 4999  # 5000 digits


@pytest.mark.parametrize(
    ("fields", "code", "param", "reason"),
    [
        (b'"speed": 1e400', "invalid_json", None, "infinity"),
        (b'"speed": -1e400', "invalid_json", None, "infinity"),
        (b'"speed": ' + HUGE, "invalid_json", None, "infinity"),
        (b'"speed": -' + HUGE, "invalid_json", None, "infinity"),
        (b'"unknown_field": ' + HUGE, "invalid_json", None, "infinity"),
        (b'"speed": 1e308', "invalid_value", "speed", "between 0.25 and 4.0"),
        (b'"speed": 123456789012345678901234567890', "invalid_value", "speed", "between 0.25 and 4.0"),
        (b'"speed": -0.0', "invalid_value", "speed", "between 0.25 and 4.0"),
        (b'"speed": 1e-400', "invalid_value", "speed", "between 0.25 and 4.0"),
        (b'"speed": 0.' + b"0" * 5000 + b"1", "invalid_value", "speed", "between 0.25 and 4.0"),
        (b'"speed": true', "invalid_type", "speed", "must be a number"),
        (b'"input": ' + HUGE, "invalid_json", None, "infinity"),
    ],
    ids=[
        "1e400",
        "-1e400",
        "5000_digits",
        "-5000_digits",
        "5000_digits_ignored_field",
        "1e308",
        "30_digits",
        "negative_zero",
        "1e-400_underflow",
        "5000_decimals",
        "true",
        "5000_digit_input",
    ],
)
def test_huge_and_odd_numbers(server: ServerProcess, fields: bytes, code: str, param: str | None, reason: str) -> None:
    body = b'{"model": "demo", "input": "hi", ' + fields + b"}"
    if fields.startswith(b'"input"'):
        body = b'{"model": "demo", ' + fields + b"}"
    assert reason in error(post(server, body), 400, code, param)["message"]


def nested(depth: int, open_: bytes, inner: bytes, close: bytes) -> bytes:
    return open_ * depth + inner + close * depth


@pytest.mark.parametrize(
    ("body", "code", "param", "reason"),
    [
        (b'{"model": ' + nested(10000, b"[", b"", b"]") + b', "input": "hi"}', "invalid_json", None, "depth"),
        (b'{"input": "hi", "x": ' + nested(10000, b'{"":', b"1", b"}") + b"}", "invalid_json", None, "depth"),
        (b'{"model": ' + nested(1000, b"[", b"", b"]") + b', "input": "hi"}', "invalid_type", "model", "must be a string"),
        (
            b'{"model": "demo", "input": "hi", "voice": ' + nested(1000, b'{"id": ', b'"x"', b"}") + b"}",
            "invalid_type",
            "voice",
            "'voice' as an object",
        ),
    ],
    ids=["arrays_10000_deep", "objects_10000_deep_in_an_ignored_field", "arrays_1000_deep", "voice_objects_1000_deep"],
)
def test_deep_nesting_is_a_400_not_a_recursion_error(
    server: ServerProcess, body: bytes, code: str, param: str | None, reason: str
) -> None:
    assert reason in error(post(server, body), 400, code, param)["message"]


# ---- bytes that are not UTF-8, byte order marks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xfe", b"\xc0\xaf", b"\xe3\x81", b"\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80"],
    ids=["ff_fe", "overlong_slash", "truncated_kana", "lone_continuation", "encoded_surrogate", "above_10ffff", "five_bytes"],
)
def test_invalid_utf8_is_400(server: ServerProcess, bad: bytes) -> None:
    body = b'{"model": "demo", "input": "hi' + bad + b'"}'
    assert "UTF-8" in error(post(server, body), 400, "invalid_json")["message"]


def test_a_utf8_byte_order_mark_is_ignored(server: ServerProcess) -> None:
    assert audio(post(server, b"\xef\xbb\xbf" + VALID)) > 0


@pytest.mark.parametrize(
    "body",
    [b"\xef\xbb\xbf\xef\xbb\xbf" + VALID, b"\xff\xfe" + VALID.decode().encode("utf-16-le"), VALID.decode().encode("utf-16")],
    ids=["two_boms", "utf16_le_with_bom", "utf16_native_with_bom"],
)
def test_other_byte_order_marks_are_400(server: ServerProcess, body: bytes) -> None:
    error(post(server, body), 400, "invalid_json")


# ---- sizes and framing --------------------------------------------------------------------------------------


def test_oversized_content_length_is_413_before_the_body_is_read(server: ServerProcess) -> None:
    """The client trickles its body; the 413 comes after the first kilobyte, with `Connection: close`: the server
    will not read the rest of the body, so it ends the connection rather than mistake more body for a request."""
    limit = settings().max_body_bytes
    declared = limit + 10000
    payload = (b'{"model": "demo", "input": "' + b"a" * declared)[:declared]  # never parsed: refused first
    rid = request_id()
    with Connection(server) as connection:
        connection.send(head([("Content-Type", "application/json"), ("Content-Length", str(declared)), ("X-Request-Id", rid)]))
        sent = 0
        for _ in range(5):  # slowly: 5 x 200 bytes, 0.2 s apart
            connection.send(payload[sent : sent + 200])
            sent += 200
            if connection.answered_within(0.2):
                break
        assert connection.answered_within(5), "no answer to a Content-Length over the limit"
        assert sent <= 1000
        response = connection.read_response()
        error(response, 413, "request_too_large")
        assert str(limit) in response.json()["error"]["message"]
        assert response.headers["connection"] == "close"
        assert connection.answered_within(5) and connection.reader.read() == b""  # closed by the server
    assert "status=413 code=request_too_large" in server.log_line(f"client_request_id={rid}")


def test_oversized_chunked_body_is_413_while_it_arrives(server: ServerProcess) -> None:
    """No Content-Length: the server counts the chunks and answers 413 once past the limit, before the body ends."""
    limit = settings().max_body_bytes
    chunk = b"a" * 1000
    rid = request_id()
    with Connection(server) as connection:
        connection.send(head([("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"), ("X-Request-Id", rid)]))
        connection.send(b"%x\r\n%s\r\n" % (28, b'{"model": "demo", "input": "'))
        sent, answered = 28, False
        while sent < 2 * limit:
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if connection.answered_within(0.005 if sent < limit else 0.2):
                answered = True
                break
        assert answered, f"no answer after {sent} bytes, twice the limit"
        assert limit < sent <= limit + 5 * len(chunk)  # counted, not guessed: refused just after the limit
        response = connection.read_response()  # the terminating chunk was never sent
        error(response, 413, "request_too_large")
        assert response.headers["connection"] == "close"  # the rest is not read: the connection ends
    assert "status=413 code=request_too_large" in server.log_line(f"client_request_id={rid}")


def test_valid_body_in_many_small_chunks_is_200(server: ServerProcess) -> None:
    """1 to 3 bytes per chunk, so the UTF-8 of the kana is split across chunks; one chunk carries an extension."""
    body = json.dumps({"model": "demo", "input": "はい、そう。"}, ensure_ascii=False).encode()
    framed, position, size = [], 0, 1
    while position < len(body):
        piece = body[position : position + size]
        extension = b";note=x" if position == 0 else b""
        framed.append(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece))
        position += len(piece)
        size = size % 3 + 1
    rid = request_id()
    with Connection(server) as connection:
        connection.send(head([("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"), ("X-Request-Id", rid)]))
        for frame in framed:
            connection.send(frame)
        connection.send(b"0\r\n\r\n")
        response = connection.read_response()
    assert len(framed) > 20
    assert audio(response) > 0
    assert "outcome=ok" in server.log_line(f"client_request_id={rid}")


def test_expect_100_continue_then_audio(server: ServerProcess) -> None:
    with Connection(server) as connection:
        connection.send(
            head([("Content-Type", "application/json"), ("Content-Length", str(len(VALID))), ("Expect", "100-continue")])
        )
        assert connection.answered_within(10), "no 100 Continue"
        assert connection.read_head() == (100, {})  # exactly "HTTP/1.1 100 Continue" and an empty line
        assert not connection.answered_within(0.3)  # nothing more until the body comes
        connection.send(VALID)
        response = connection.read_response()
    assert response.interim == []
    assert audio(response) > 0


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ([("Content-Type", "application/json"), ("Content-Length", "10000000")], 413, "request_too_large"),
        ([("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "100")], 415, "unsupported_media_type"),
    ],
    ids=["oversized", "wrong_type"],
)
def test_expect_100_continue_refused_without_continue(server: ServerProcess, headers, status: int, code: str) -> None:
    with Connection(server) as connection:
        connection.send(head([*headers, ("Expect", "100-continue")]))
        assert connection.answered_within(10)
        response = connection.read_response()
    assert response.interim == []  # the final status came first: the client must not send its body
    error(response, status, code)


def test_after_refusing_an_expect_100_continue_the_connection_is_closed(server: ServerProcess) -> None:
    with Connection(server, timeout=5) as connection:
        connection.send(head([("Content-Type", "application/json"), ("Content-Length", "10000000"), ("Expect", "100-continue")]))
        first = connection.read_response()
        assert first.status == 413
        assert first.headers["connection"] == "close"  # the client is told, and the server closes its side
        assert connection.answered_within(5) and connection.reader.read() == b""


@pytest.mark.parametrize(
    "framing",
    [
        [("Transfer-Encoding", "chunked")],  # followed by a chunk size that is not hex
        [("Content-Length", "12"), ("Content-Length", "13")],
        [("Content-Length", "twelve")],
    ],
    ids=["bad-chunk-size", "two-content-lengths", "non-numeric-length"],
)
def test_malformed_http_is_an_openai_shaped_400(server: ServerProcess, framing: list[tuple[str, str]]) -> None:
    """The HTTP parser refuses these before the application runs; the answer still has the error shape."""
    with Connection(server, timeout=10) as connection:
        connection.send(head([("Content-Type", "application/json"), *framing]) + b"zz\r\n{}\r\n0\r\n\r\n")
        response = connection.read_response()
        assert response.status == 400 and response.headers["connection"] == "close"
        assert response.json()["error"]["code"] == "invalid_http"
