"""api/openapi.json, the hand-written OpenAPI 3.1 document of the HTTP API, kept true against the real server.

- The document is valid OpenAPI 3.1 (openapi-spec-validator), its examples match their schemas, the values it
  lists are the code's (formats, content types, limits, routes, open paths), and GET /openapi.json serves exactly
  its bytes.
- Its request body schema accepts exactly the bodies api/speech_request.py accepts: each rule's edge values alone
  in a valid body, and random bodies (hypothesis), through the real parser in process.
- Real responses conform to it: for each request below, the status is documented for the operation (or, for a
  path or method the document does not list, it is the documented 404 or 405 with the right Allow), the
  Content-Type is documented, required headers are there and match their schemas, and JSON bodies and SSE events
  match their schemas. The checker is shown to reject mutated responses, so these tests can fail.
- A schemathesis run against the running server's /openapi.json, bounded in examples and time: no 5xx, every
  response conforms (status, Content-Type, headers, body), invalid bodies are rejected with a 4xx, and the server
  is healthy and idle afterwards. Its figures go to tests/output/openapi-fuzz.json and are printed. It fuzzes the
  session's default server; to also synthesise, one run draws speech requests from a copy of the document whose
  `model`, `voice` and `input` schemas are narrowed to the demo voice and short texts (checked to be subsets;
  every response is still checked against the served document's response definitions).

Statuses that need another server configuration (401, 408, 429 from the rate limit, 503 while loading) are
produced by the real application object called in process (no voices loaded, so it stays "loading"), which costs
no second server process. 429 from a full synthesis queue is produced on the real server.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import time
from pathlib import Path

import anyio
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from engine.text.languages import SPELLINGS
from tests.helpers import OUTPUT, SPEECH
from tests.server_process import ROOT, ServerProcess

DOC_PATH = ROOT / "api" / "openapi.json"
DOCUMENT = json.loads(DOC_PATH.read_text(encoding="utf-8"))
DOC_URI = "urn:gsv-speech:openapi"
REGISTRY = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(DOCUMENT))
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SPEECH_REQUEST = "/components/schemas/SpeechRequest"


# ---- the checker: what the document allows for a response ----------------------------------------------------


def pointer(*parts: object) -> str:
    """A JSON pointer (RFC 6901) from its unescaped parts."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def lookup(ptr: str) -> object:
    node: object = DOCUMENT
    for raw in ptr.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    return node


def resolved(ptr: str) -> tuple[str, dict]:
    """Follow local $refs (responses and headers may be references) to the object and its pointer."""
    node = lookup(ptr)
    while isinstance(node, dict) and "$ref" in node:
        ptr = node["$ref"].removeprefix("#")
        node = lookup(ptr)
    assert isinstance(node, dict), ptr
    return ptr, node


def schema_errors(ptr: str, instance: object, registry: Registry = REGISTRY) -> list[str]:
    """Validation errors of `instance` against the schema at `ptr` (JSON Schema 2020-12, OpenAPI 3.1's dialect)."""
    validator = Draft202012Validator({"$ref": f"{DOC_URI}#{ptr}"}, registry=registry)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}" for error in validator.iter_errors(instance)
    ]


def template_of(path: str) -> str | None:
    """The document's path template that `path` falls under, or None."""
    if path in DOCUMENT["paths"]:
        return path
    for template in DOCUMENT["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    return None


def listed_methods(template: str) -> set[str]:
    """The operations the document lists for a path."""
    return {method.upper() for method in DOCUMENT["paths"][template] if method in HTTP_METHODS}


def documented_methods(template: str) -> set[str]:
    """The methods a path answers: its operations, and HEAD where GET is (the description's **HEAD** paragraph)."""
    listed = listed_methods(template)
    return listed | {"HEAD"} if "GET" in listed else listed


def parse_sse(text: str) -> list[dict[str, str]]:
    """Events of a text/event-stream body, each as {field: value} (the shape schemathesis validates too)."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event: dict[str, str] = {}
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")
        events.append(event)
    return events


def coerce_header(value: str, schema: dict) -> object:
    if schema.get("type") == "integer" and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def response_problems(ptr: str, response: httpx.Response) -> list[str]:
    """What in `response` the Response Object at `ptr` does not allow (headers, Content-Type, body)."""
    head = response.request.method == "HEAD" if response._request is not None else False
    ptr, definition = resolved(ptr)
    problems = []
    for name in definition.get("headers", {}):
        header_ptr, header = resolved(ptr + pointer("headers", name))
        value = response.headers.get(name)
        if value is None:
            if header.get("required"):
                problems.append(f"required header {name} is missing")
            continue
        _, header_schema = resolved(header_ptr + "/schema")
        problems += [
            f"header {name}: {error}" for error in schema_errors(header_ptr + "/schema", coerce_header(value, header_schema))
        ]
    content = definition.get("content", {})
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in content:
        return [*problems, f"Content-Type {media_type!r} is not documented (documented: {', '.join(content) or 'none'})"]
    if "schema" not in content[media_type] or head:
        return problems  # audio: bytes with no schema; HEAD: no body
    schema_ptr = ptr + pointer("content", media_type, "schema")
    if media_type == "application/json":
        try:
            body = response.json()
        except ValueError as error:
            return [*problems, f"body is not JSON: {error}"]
        problems += [f"body {error}" for error in schema_errors(schema_ptr, body)]
    elif media_type == "text/event-stream":
        for index, event in enumerate(parse_sse(response.text)):
            problems += [f"event {index}: {error}" for error in schema_errors(schema_ptr, event)]
            try:
                data = json.loads(event.get("data", ""))
            except ValueError as error:
                problems.append(f"event {index}: data is not JSON: {error}")
                continue
            problems += [
                f"event {index} data {error}" for error in schema_errors(schema_ptr + "/properties/data/contentSchema", data)
            ]
    else:
        problems += [f"body {error}" for error in schema_errors(schema_ptr, response.text)]
    return problems


def conformance_problems(method: str, path: str, response: httpx.Response) -> list[str]:
    """Everything in the response to `method path` that the document does not allow; empty when it conforms."""
    status = response.status_code
    template = template_of(path)
    if template is None:
        if status != 404:
            return [f"{path} is in no path of the document, so 404 is the documented answer, not {status}"]
        return response_problems("/components/responses/NotFound", response)
    operations = DOCUMENT["paths"][template]
    if method == "HEAD" and "get" in operations:
        method = "GET"  # the GET's responses, without a body (response_problems skips the body of a HEAD)
    if method.lower() not in operations:
        if status != 405:
            return [f"{method} is not documented for {template}, so 405 is the documented answer, not {status}"]
        problems = response_problems("/components/responses/MethodNotAllowed", response)
        allow = {part.strip() for part in response.headers.get("allow", "").split(",") if part.strip()}
        if allow != documented_methods(template):
            problems.append(f"Allow {sorted(allow)} is not the documented methods {sorted(documented_methods(template))}")
        return problems
    responses = operations[method.lower()]["responses"]
    if str(status) not in responses:
        return [f"status {status} is not documented for {method} {template} (documented: {', '.join(responses)})"]
    return response_problems(pointer("paths", template, method.lower(), "responses", str(status)), response)


def assert_conforms(method: str, path: str, response: httpx.Response) -> None:
    problems = conformance_problems(method, path, response)
    assert not problems, (
        f"{method} {path} -> {response.status_code}: " + "; ".join(problems) + f"\nbody: {response.content[:500]!r}"
    )


# ---- the document itself ---------------------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator

    errors = [error.message for error in OpenAPIV31SpecValidator(DOCUMENT).iter_errors()]
    assert errors == []
    assert re.fullmatch(r"3\.1\.\d+", DOCUMENT["openapi"])


def test_every_example_matches_its_schema() -> None:
    """Request and response examples are documentation; a wrong one would mislead a reader or a client generator."""
    checked = 0
    for template, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            media_pointers = [
                pointer("paths", template, method, "requestBody", "content", media)
                for media in operation.get("requestBody", {}).get("content", {})
            ]
            for status in operation["responses"]:
                response_ptr, response = resolved(pointer("paths", template, method, "responses", status))
                media_pointers += [response_ptr + pointer("content", media) for media in response.get("content", {})]
            for media_ptr in media_pointers:
                media = lookup(media_ptr)
                examples = (
                    [media["example"]] if "example" in media else [item["value"] for item in media.get("examples", {}).values()]
                )
                for example in examples:
                    assert schema_errors(media_ptr + "/schema", example) == [], (media_ptr, example)
                    checked += 1
    assert checked >= 8


def test_document_agrees_with_the_code() -> None:
    """The values the document lists are the ones the code uses: formats, content types, limits, routes, open paths."""
    from api.app import Application
    from api.speech_request import MAX_INSTRUCTIONS_CHARS, SPEED_RANGE, STREAM_FORMATS
    from settings import Settings
    from wavstream.formats import ENCODERS, OPENAI_FORMATS

    properties = lookup(SPEECH_REQUEST + "/properties")
    assert set(properties["response_format"]["enum"]) - {"", None} == set(OPENAI_FORMATS)
    assert set(properties["stream_format"]["enum"]) - {"", None} == set(STREAM_FORMATS)
    assert (properties["speed"]["minimum"], properties["speed"]["maximum"]) == SPEED_RANGE
    assert properties["input"]["maxLength"] == Settings().max_input_chars
    assert properties["instructions"]["maxLength"] == MAX_INSTRUCTIONS_CHARS
    audio_types = {
        media for media in lookup(pointer("paths", SPEECH, "post", "responses", "200", "content")) if media.startswith("audio/")
    }
    assert audio_types == {ENCODERS[name].content_type for name in OPENAI_FORMATS}

    table = Application(Settings(), Path("/nonexistent"), []).routes
    routes: dict[str, set[str]] = {}
    for route in table.routes:
        routes.setdefault(route.path, set()).add(route.method)
    assert routes == {template: listed_methods(template) for template in DOCUMENT["paths"]}
    assert "HEAD" in table.methods and "HEAD" in DOCUMENT["info"]["description"]  # HEAD: answered, and documented
    open_in_document = {
        template
        for template, operations in DOCUMENT["paths"].items()
        if all(op.get("security") == [] for op in operations.values())
    }
    assert open_in_document == {route.path for route in table.routes if route.open}


@pytest.mark.e2e
def test_served_document_is_the_file(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == DOC_PATH.read_bytes()
    assert_conforms("GET", "/openapi.json", response)


# ---- the request body schema is exactly api/speech_request.py's rules ------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
_SPACES = st.text(st.sampled_from(" \t\r\n\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2028\u3000\u200b\ufeff"), min_size=1, max_size=4)
_LONG = st.integers(4094, 4098).map(lambda n: "あ" * n)
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.floats(-1, 5, allow_nan=False),
    _TEXT,
    st.lists(st.integers(0, 9), max_size=2),
)


def _mostly(valid: object, *others: st.SearchStrategy) -> st.SearchStrategy:
    """Half the time a valid value, so that bodies wrong in exactly one field are common."""
    return st.one_of(st.just(valid), st.one_of(_ANY, *others))


_REQUIRED = {
    "model": _mostly("demo", st.just("")),
    "input": _mostly("こんにちは", _SPACES, _LONG, st.just("")),
}
_OPTIONAL = {
    "voice": _mostly("calm", st.fixed_dictionaries({}, optional={"id": _ANY, "name": _ANY})),
    "response_format": _mostly("mp3", st.sampled_from(["mp3", "opus", "aac", "flac", "wav", "pcm", "", "ogg", "MP3"])),
    "speed": _mostly(1.5, st.sampled_from([0.25, 4, 4.0, 0.2499999, 4.0000001, 0, 1, 2.5])),
    "stream_format": _mostly("sse", st.sampled_from(["audio", "sse", "", "SSE", "websocket"])),
    "instructions": _mostly("calmly", _LONG),
    "language": _mostly(
        "zh", st.sampled_from(["auto", "AUTO", "ja", "jp", "En", "chinese", "KOREAN", "", "fr", "ja\n", " ja", "\u212ao"])
    ),
    "extra": _ANY,
}
_BODIES = st.one_of(
    st.fixed_dictionaries(_REQUIRED, optional=_OPTIONAL),
    st.fixed_dictionaries({}, optional={**_REQUIRED, **_OPTIONAL}),
    _ANY,
)


#: For each field, values on both sides of each rule; each is tried alone in an otherwise valid body.
_EDGES = {
    "model": [None, "", " ", "demo", "x", 0, True, [], {}],
    "input": [
        None,
        "",
        " ",
        "\u3000\n",
        "\x1c",
        "\u200b",
        "\ufeff",
        "a",
        " a ",
        "あ" * 4096,
        "あ" * 4097,
        "😀" * 4096,
        1,
        [],
        {},
    ],
    "voice": [
        None,
        "",
        "calm",
        "demo/calm",
        1,
        True,
        [],
        {},
        {"id": None},
        {"id": "calm"},
        {"id": 1},
        {"name": "x"},
        {"id": "calm", "x": 1},
    ],
    "response_format": [None, "", "mp3", "opus", "aac", "flac", "wav", "pcm", "MP3", "ogg", 1, True, []],
    "speed": [None, 0, 0.25, 0.2499999, 1, 4, 4.0, 4.0000001, 5, -1, True, False, "1", []],
    "stream_format": [None, "", "audio", "sse", "SSE", "ws", 1, False],
    "instructions": [None, "", "x", "x" * 4096, "x" * 4097, 1, []],
    "language": [
        None,
        "",
        "auto",
        "Auto",
        "ja",
        "JA",
        "en",
        "zh",
        "ko",
        "Korean",
        "japanese",
        "fr",
        "ja\n",
        " zh",
        "\u212ao",
        *sorted(SPELLINGS),  # every spelling of the one table of languages
        1,
        [],
    ],
    "extra": [None, 1, "x", {}, []],
}


def _agreement(body: object, registry: Registry = REGISTRY) -> tuple[bool, bool, str]:
    """(valid by the document, accepted by parse_speech_request with the default limits, the parser's message)."""
    from api.errors import ApiError
    from api.speech_request import parse_speech_request

    try:
        parse_speech_request(orjson.dumps(body), 4096, "wav")
        accepted, reason = True, ""
    except ApiError as error:
        accepted, reason = False, error.message
    return not schema_errors(SPEECH_REQUEST, body, registry), accepted, reason


def test_request_schema_agrees_with_the_parser_on_each_rule() -> None:
    base = {"model": "demo", "input": "こんにちは"}
    bodies: list[object] = [
        base,
        [],
        "x",
        1,
        None,
        True,
        *({key: value for key, value in base.items() if key != name} for name in base),
    ]
    bodies += [{**base, name: value} for name, values in _EDGES.items() for value in values]
    disagreements = []
    for body in bodies:
        valid, accepted, reason = _agreement(body)
        if valid != accepted:
            disagreements.append(f"document says valid={valid}, parser says accepted={accepted} ({reason}): {str(body)[:120]}")
    assert disagreements == []

    # The comparison can fail: a document that forgot one rule disagrees with the parser on that rule.
    forgetful = copy.deepcopy(DOCUMENT)
    del forgetful["components"]["schemas"]["SpeechRequest"]["properties"]["input"]["maxLength"]
    forgetful_registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(forgetful))
    assert _agreement({**base, "input": "あ" * 4097}, forgetful_registry)[:2] == (True, False)


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=_BODIES)
def test_request_schema_accepts_exactly_what_the_parser_accepts(body: object) -> None:
    """For any JSON body: valid by the document's SpeechRequest <=> parse_speech_request accepts it (default limits)."""
    valid, accepted, reason = _agreement(body)
    assert valid == accepted, f"document says valid={valid}, parser says accepted={accepted} ({reason}) for {body!r}"


# ---- real responses against the document -----------------------------------------------------------------------

_J = {"content-type": "application/json"}
#: (id, method, path, request options, expected status). Bodies are small; the 200s speak one short word.
REAL_REQUESTS = [
    ("health", "GET", "/health", {}, 200),
    ("models", "GET", "/v1/models", {}, 200),
    ("model", "GET", "/v1/models/demo", {}, 200),
    ("model-case-insensitive", "GET", "/v1/models/DEMO", {}, 200),
    ("model-unknown", "GET", "/v1/models/no-such-voice", {}, 404),
    ("voices", "GET", "/v1/audio/voices", {}, 200),
    ("audio-models", "GET", "/v1/audio/models", {}, 200),
    ("playground", "GET", "/", {}, 200),
    ("openapi", "GET", "/openapi.json", {}, 200),
    ("metrics", "GET", "/metrics", {}, 200),
    ("request-id-plain", "GET", "/health", {"headers": {"x-request-id": "my-id.1:2"}}, 200),
    ("request-id-not-plain", "GET", "/health", {"headers": {"x-request-id": "not ok!"}}, 200),
    ("unknown-path", "GET", "/v1/nothing-here", {}, 404),
    ("unknown-path-post", "POST", "/v1/audio/transcriptions", {}, 404),
    *[
        (f"speech-{fmt}", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "response_format": fmt}}, 200)
        for fmt in ("wav", "pcm", "mp3", "opus", "aac", "flac")
    ],
    ("speech-sse", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "stream_format": "sse"}}, 200),
    (
        "speech-style-object-openai-model",
        "POST",
        SPEECH,
        {"json": {"model": "tts-1", "input": "あ", "voice": {"id": "demo/calm"}, "speed": 2}},
        200,
    ),
    (
        "speech-text-plain",
        "POST",
        SPEECH,
        {"content": b'{"model": "demo", "input": "\\u3042"}', "headers": {"content-type": "text/plain"}},
        200,
    ),
    ("invalid-json", "POST", SPEECH, {"content": b"{not json", "headers": _J}, 400),
    ("not-an-object", "POST", SPEECH, {"content": b"[1, 2]", "headers": _J}, 400),
    ("empty-body", "POST", SPEECH, {"content": b"", "headers": _J}, 400),
    ("missing-model", "POST", SPEECH, {"json": {"input": "あ"}}, 400),
    ("empty-model", "POST", SPEECH, {"json": {"model": "", "input": "あ"}}, 400),
    ("missing-input", "POST", SPEECH, {"json": {"model": "demo"}}, 400),
    ("blank-input", "POST", SPEECH, {"json": {"model": "demo", "input": " \u3000\n"}}, 400),
    ("input-too-long", "POST", SPEECH, {"json": {"model": "demo", "input": "あ" * 4097}}, 400),
    ("speed-out-of-range", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "speed": 4.5}}, 400),
    ("speed-bool", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "speed": True}}, 400),
    ("format-unknown", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "response_format": "ogg"}}, 400),
    ("stream-format-unknown", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "stream_format": "ws"}}, 400),
    ("voice-number", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "voice": 7}}, 400),
    ("voice-object-without-id", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "voice": {"name": "x"}}}, 400),
    (
        "speech-language",
        "POST",
        SPEECH,
        {"json": {"model": "demo", "input": "あ", "language": "Japanese", "stream_format": "sse"}},
        200,
    ),
    ("language-unknown", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "language": "fr"}}, 400),
    ("instructions-too-long", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "instructions": "x" * 4097}}, 400),
    ("unknown-style", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "voice": "no-such-style"}}, 400),
    ("style-of-another-voice", "POST", SPEECH, {"json": {"model": "demo", "input": "あ", "voice": "other/calm"}}, 400),
    ("nothing-to-say", "POST", SPEECH, {"json": {"model": "demo", "input": "😀🎉"}}, 400),
    ("unknown-model", "POST", SPEECH, {"json": {"model": "no-such-voice", "input": "あ"}}, 404),
    ("body-too-large", "POST", SPEECH, {"content": b'{"model": "demo", "input": "' + b"a" * 140000 + b'"}', "headers": _J}, 413),
    ("form-body", "POST", SPEECH, {"data": {"model": "demo", "input": "x"}}, 415),
    ("speech-get", "GET", SPEECH, {}, 405),
    ("health-post", "POST", "/health", {}, 405),
    ("model-delete", "DELETE", "/v1/models/demo", {}, 405),
    ("playground-head", "HEAD", "/", {}, 200),
    ("health-head", "HEAD", "/health", {}, 200),
    ("liveness", "GET", "/livez", {}, 200),
    ("speech-head", "HEAD", SPEECH, {}, 405),
    ("options-without-preflight", "OPTIONS", "/v1/models", {}, 405),
]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("method", "path", "options", "status"), [case[1:] for case in REAL_REQUESTS], ids=[case[0] for case in REAL_REQUESTS]
)
def test_real_responses_conform(server: ServerProcess, method: str, path: str, options: dict, status: int) -> None:
    response = httpx.request(method, f"{server.base_url}{path}", timeout=60, **options)
    assert response.status_code == status, response.content[:300]
    assert_conforms(method, path, response)
    if response.status_code == 200 and path == SPEECH:
        assert response.content, "a 200 speech response carries audio"
        if response.headers["content-type"] == "text/event-stream":
            events = [json.loads(event["data"]) for event in parse_sse(response.text)]
            assert [event["type"] for event in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
            assert events[-1]["type"] == "speech.audio.done"
    if "x-request-id" in options.get("headers", {}):
        # The server's own id, whatever the client sent (the client's is only logged: tests/test_log_injection_e2e.py).
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.e2e
def test_every_undocumented_method_is_405_with_the_documented_allow(server: ServerProcess) -> None:
    checked = 0
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for template in DOCUMENT["paths"]:
            path = template.replace("{id}", "demo")
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
                if method in documented_methods(template):
                    continue
                response = client.request(method, path)
                assert_conforms(method, path, response)
                checked += 1
    assert checked == 7 * len(DOCUMENT["paths"]) - sum(len(documented_methods(t)) for t in DOCUMENT["paths"])


@pytest.mark.e2e
def test_queue_full_is_a_documented_429(strict_server: ServerProcess) -> None:
    """Its one place (WORKERS=1, QUEUE_SIZE=0) taken and no waiting line (MAX_QUEUE_WAIT=0): a 429 with Retry-After.
    (A server with a line answers it too, when the expected wait is too long: tests/test_admission_e2e.py.)"""
    strict_server.wait_idle()
    headers = {"authorization": "Bearer test-secret-key"}
    body = {"model": "demo", "input": "むかしむかし、ある山のふもとに、おじいさんとおばあさんが住んでいました。" * 4}
    # From addresses of their own, out of the other tests' rate-limit budgets.
    holder = httpx.Client(base_url=strict_server.base_url, timeout=60, transport=httpx.HTTPTransport(local_address="127.0.1.1"))
    other = httpx.Client(base_url=strict_server.base_url, timeout=60, transport=httpx.HTTPTransport(local_address="127.0.1.2"))
    with holder, other, holder.stream("POST", SPEECH, json=body, headers=headers) as held:
        assert held.status_code == 200  # its headers at once; the audio is left unread
        busy = other.post(SPEECH, json=body, headers=headers)
    assert busy.status_code == 429, busy.content
    assert_conforms("POST", SPEECH, busy)
    assert busy.json()["error"]["code"] == "rate_limit_exceeded"
    strict_server.wait_idle(timeout=60)  # closing the stream cancelled its synthesis


# ---- statuses of other configurations: the real application object, in process -------------------------------


def asgi_request(
    app: object,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    client: str = "127.0.0.1",
    stall_body: bool = False,
) -> httpx.Response:
    """One request through the ASGI application itself (what uvicorn would call), as an httpx.Response."""

    async def exchange() -> list[dict]:
        messages: list[dict] = []
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if stall_body or delivered:
                await anyio.sleep_forever()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            messages.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
            "client": (client, 50000),
            "server": ("127.0.0.1", 7860),
        }
        await app(scope, receive, send)  # type: ignore[operator]
        return messages

    messages = anyio.run(exchange)
    start = messages[0]
    assert start["type"] == "http.response.start"
    content = b"".join(message.get("body", b"") for message in messages[1:])
    return httpx.Response(start["status"], headers=[(k.decode(), v.decode()) for k, v in start["headers"]], content=content)


def test_statuses_of_other_configurations_conform() -> None:
    """401 (API_KEY set), 429 (RATE_LIMIT_PER_MINUTE), 408 (BODY_TIMEOUT), 503 while loading and with no voices."""
    from api.app import Application
    from settings import Settings

    settings = Settings(api_key="secret", rate_limit_per_minute=1, body_timeout=1)
    app = Application(settings, Path("/nonexistent"), [])  # never started: its voices stay "loading"
    auth = {"authorization": "Bearer secret"}
    speech = orjson.dumps({"model": "demo", "input": "あ"})
    seen = {}

    def check(label: str, status: int, method: str, path: str, **options: object) -> httpx.Response:
        response = asgi_request(app, method, path, **options)
        assert response.status_code == status, (label, response.content)
        assert_conforms(method, path, response)
        seen[label] = response
        return response

    check("health loading", 503, "GET", "/health")
    for path in ("/v1/models", "/v1/models/demo", "/metrics"):
        assert check(f"{path} no key", 401, "GET", path).json()["error"]["code"] == "invalid_api_key"
    check("speech wrong key", 401, "POST", SPEECH, headers={"authorization": "Bearer nope", **_J}, body=speech)
    check("models with key", 200, "GET", "/v1/models", headers=auth)
    check("metrics with key", 200, "GET", "/metrics", headers=auth)
    for path in ("/v1/audio/voices", "/v1/audio/models", "/", "/health"):
        assert asgi_request(app, "GET", path).status_code != 401, path  # open without the key
    served = check("openapi without key", 200, "GET", "/openapi.json")
    assert served.content == DOC_PATH.read_bytes()
    loading = check("speech loading", 503, "POST", SPEECH, headers={**auth, **_J}, body=speech, client="10.0.0.1")
    assert loading.json()["error"]["code"] == "loading" and loading.headers["retry-after"] == "10"
    limited = check("speech rate limited", 429, "POST", SPEECH, headers={**auth, **_J}, body=speech, client="10.0.0.1")
    assert limited.json()["error"]["type"] == "rate_limit_error"
    slow = check("speech body too slow", 408, "POST", SPEECH, headers={**auth, **_J}, client="10.0.0.2", stall_body=True)
    assert slow.json()["error"]["code"] == "request_timeout"
    app.voices.state = "no_voices"  # what ServedVoices.load sets when no voice could be loaded
    assert check("health no voices", 503, "GET", "/health").json()["status"] == "no_voices"


def test_the_500_of_an_unexpected_failure_conforms(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug before the response starts (here injected into the voice choice and a small endpoint) is documented."""
    from api.app import Application
    from api.voices import ServedVoices
    from settings import Settings

    def broken(*args: object) -> None:
        raise RuntimeError("injected")

    app = Application(Settings(), Path("/nonexistent"), [])
    monkeypatch.setattr(ServedVoices, "choose", broken)
    speech = asgi_request(app, "POST", SPEECH, headers=_J, body=orjson.dumps({"model": "demo", "input": "あ"}))
    routes = [
        dataclasses.replace(route, handler=broken) if route.path == "/openapi.json" else route for route in app.routes.routes
    ]
    monkeypatch.setattr(app.routes, "routes", routes)
    document = asgi_request(app, "GET", "/openapi.json")
    for method, path, response in (("POST", SPEECH, speech), ("GET", "/openapi.json", document)):
        assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
        assert_conforms(method, path, response)


# ---- the checker can fail ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_checker_rejects_what_the_document_does_not_allow(server: ServerProcess) -> None:
    """Real responses, each changed in one way the document forbids: every change must be reported."""
    models = httpx.get(f"{server.base_url}/v1/models", timeout=10)
    error = httpx.get(f"{server.base_url}/v1/models/no-such-voice", timeout=10)
    sse = httpx.post(f"{server.base_url}{SPEECH}", json={"model": "demo", "input": "あ", "stream_format": "sse"}, timeout=60)
    for method, path, response in (("GET", "/v1/models", models), ("GET", "/v1/models/x", error), ("POST", SPEECH, sse)):
        assert conformance_problems(method, path, response) == []

    def changed(
        response: httpx.Response,
        *,
        status: int | None = None,
        headers: dict | None = None,
        drop_header: str | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        new_headers = {k: v for k, v in response.headers.items() if k != drop_header and k != "content-length"}
        new_headers.update(headers or {})
        return httpx.Response(
            status or response.status_code, headers=new_headers, content=response.content if content is None else content
        )

    body = models.json()
    del body["data"][0]["owned_by"]
    error_body = error.json()
    del error_body["error"]["param"]
    wrong_type = error.json()
    wrong_type["error"]["type"] = "not_found_error"
    last = sse.text.rstrip("\n").rsplit("\n\n", 1)
    bad_event = last[0] + '\n\ndata: {"type": "speech.audio.done", "usage": {"input_tokens": 1}}\n\n'
    mutants = {
        "model without owned_by": ("GET", "/v1/models", changed(models, content=orjson.dumps(body))),
        "undocumented status": ("GET", "/v1/models", changed(models, status=418)),
        "undocumented content type": ("GET", "/v1/models", changed(models, headers={"content-type": "text/plain"})),
        "no x-request-id": ("GET", "/v1/models", changed(models, drop_header="x-request-id")),
        "malformed x-request-id": ("GET", "/v1/models", changed(models, headers={"x-request-id": "a b"})),
        "error without param": ("GET", "/v1/models/x", changed(error, content=orjson.dumps(error_body))),
        "error of an unknown type": ("GET", "/v1/models/x", changed(error, content=orjson.dumps(wrong_type))),
        "sse event with half a usage": ("POST", SPEECH, changed(sse, content=bad_event.encode())),
        "sample rate not a number": ("POST", SPEECH, changed(sse, headers={"x-sample-rate": "fast"})),
        "405 with the wrong Allow": (
            "GET",
            SPEECH,
            httpx.Response(405, headers={"allow": "GET", "x-request-id": "0" * 32}, json=error.json()),
        ),
        "unknown path answering 200": ("GET", "/v1/nothing", models),
    }
    for label, (method, path, response) in mutants.items():
        assert conformance_problems(method, path, response), f"the checker accepted: {label}"


# ---- a path-parameter quirk the fuzzer found (fixed) ----------------------------------------------------------------


@pytest.mark.e2e
def test_model_id_made_of_slashes_is_a_404(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/v1/models/%2F", timeout=10)
    assert response.status_code == 404
    assert_conforms("GET", "/v1/models/x", response)


# ---- schemathesis --------------------------------------------------------------------------------------------------

FUZZ_SEED = int(os.environ.get("OPENAPI_FUZZ_SEED", "20261127"))
FUZZ_TIME_BOUND_S = 240.0
#: Examples per run. GET operations are cheap; positive speech requests that reach the voice cost 1-4 s each.
FUZZ_GET_EXAMPLES = 30
FUZZ_SPEECH_NEGATIVE_EXAMPLES = 150
FUZZ_SPEECH_POSITIVE_EXAMPLES = 20
FUZZ_SPEECH_VOICE_EXAMPLES = 30


def narrowed_for_the_demo_voice(document: dict) -> dict:
    """A copy of the served document whose request schemas are subsets of the served ones.

    Positive cases drawn from the served document name random voices, so almost all are 404s and nothing is
    synthesised. This copy makes `model` one of the names that select the demo voice, `voice` mostly a valid
    choice, and `input` short (synthesis is real: 1-4 s per short text). Only these three property schemas
    differ; responses are checked against the same response definitions as the served document.
    """
    narrowed = copy.deepcopy(document)
    properties = narrowed["components"]["schemas"]["SpeechRequest"]["properties"]
    properties["model"] = {"enum": ["demo", "DEMO", "tts-1", "gpt-4o-mini-tts-2025-03-20"]}
    properties["voice"] = {
        "anyOf": [
            {
                "enum": [
                    None,
                    "",
                    "demo",
                    "calm",
                    "CALM",
                    "demo/calm",
                    "alloy",
                    "nova",
                    {"id": "calm"},
                    {"id": "demo/calm"},
                    "sad",
                    "other/calm",
                ]
            },
            properties["voice"],
        ]
    }
    properties["input"] = {
        "anyOf": [
            {"enum": ["こんにちは。", "Hello.", "今日は。", "你好。", "あ", "1, 2, 3."]},
            {**properties["input"], "maxLength": 12},
        ]
    }
    return narrowed


def fuzz_run(
    operation: object, mode: object, examples: int, checks: list, run_seed: int, deadline: float, session: object
) -> tuple[dict, str | None]:
    """Up to `examples` cases of one operation, each sent and checked: ({"sent", "statuses"}, failure or None)."""
    figures: dict = {"sent": 0, "statuses": {}}

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=operation.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
    def run(case: object) -> None:
        if time.monotonic() > deadline:
            pytest.fail(f"the fuzz run went over its time bound of {FUZZ_TIME_BOUND_S} s (server too slow or hung?)")
        figures["sent"] += 1
        response = case.call(session=session, timeout=60)  # type: ignore[attr-defined]
        key = str(response.status_code)
        figures["statuses"][key] = figures["statuses"].get(key, 0) + 1
        case.validate_response(response, checks=checks)  # type: ignore[attr-defined]

    try:
        run()
    except BaseException as error:  # pytest.fail's exception too; collected and reported together by the caller
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return figures, f"{type(error).__name__}: {error}"
    return figures, None


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_schemathesis_fuzz_against_the_served_document(server: ServerProcess, capsys: pytest.CaptureFixture) -> None:
    """schemathesis cases for every operation, sent to the session's default server and checked against the document.

    Checks on every response: no 5xx, status documented for the operation, Content-Type documented, documented
    headers present and valid, body valid against its schema (SSE: each event's JSON). Negative cases (bodies
    that break the request schema) must also be rejected with a 4xx. Bounded by examples per run and by
    FUZZ_TIME_BOUND_S overall; afterwards the server must be healthy with no request active.
    """
    import requests
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks as openapi_checks

    served_bytes = httpx.get(f"{server.base_url}/openapi.json", timeout=10).content
    assert served_bytes == DOC_PATH.read_bytes()
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    narrowed_document = narrowed_for_the_demo_voice(json.loads(served_bytes))
    narrowed = schemathesis.openapi.from_dict(narrowed_document)
    narrowed.config.update(base_url=server.base_url)
    served_properties = lookup(SPEECH_REQUEST + "/properties")
    narrowed_properties = narrowed_document["components"]["schemas"]["SpeechRequest"]["properties"]
    changed = {name for name in served_properties if narrowed_properties[name] != served_properties[name]}
    assert changed == {"model", "voice", "input"}
    for name in changed:  # every value the copy lists is one the served document allows
        listed = narrowed_properties[name].get("enum", []) + narrowed_properties[name].get("anyOf", [{}])[0].get("enum", [])
        assert listed and all(schema_errors(f"{SPEECH_REQUEST}/properties/{name}", value) == [] for value in listed), name
    restored = copy.deepcopy(narrowed_document)  # and nothing else differs
    restored["components"]["schemas"]["SpeechRequest"]["properties"].update({name: served_properties[name] for name in changed})
    assert restored == DOCUMENT

    conformance = [
        not_a_server_error,
        openapi_checks.status_code_conformance,
        openapi_checks.content_type_conformance,
        openapi_checks.response_headers_conformance,
        openapi_checks.response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the operation that serves the document it loaded from; the copy (loaded from a dict)
    # has it, unchanged.
    assert {op.label for op in operations} == {f"{m} {t}" for t in DOCUMENT["paths"] for m in listed_methods(t)} - {
        "GET /openapi.json"
    }
    operations.append(narrowed["/openapi.json"]["GET"])
    runs = []  # (label, operation, mode, examples, checks)
    for operation in operations:
        if operation.method.upper() == "GET":
            runs.append((f"{operation.label} positive", operation, GenerationMode.POSITIVE, FUZZ_GET_EXAMPLES, conformance))
    speech = schema[SPEECH]["POST"]
    runs.append(
        (
            f"{speech.label} negative",
            speech,
            GenerationMode.NEGATIVE,
            FUZZ_SPEECH_NEGATIVE_EXAMPLES,
            [*conformance, openapi_checks.negative_data_rejection],
        )
    )
    runs.append((f"{speech.label} positive", speech, GenerationMode.POSITIVE, FUZZ_SPEECH_POSITIVE_EXAMPLES, conformance))
    runs.append(
        (
            f"{speech.label} positive, demo voice",
            narrowed[SPEECH]["POST"],
            GenerationMode.POSITIVE,
            FUZZ_SPEECH_VOICE_EXAMPLES,
            conformance,
        )
    )

    began = time.monotonic()
    deadline = began + FUZZ_TIME_BOUND_S
    report: dict = {
        "seed": FUZZ_SEED,
        "time_bound_s": FUZZ_TIME_BOUND_S,
        "server": "the session's default server (demo voice, default settings)",
        "operations": len(operations),
        "runs": [],
        "failures": [],
    }
    session = requests.Session()
    for index, (label, operation, mode, examples, checks) in enumerate(runs):
        started = time.monotonic()
        figures, failure = fuzz_run(operation, mode, examples, checks, FUZZ_SEED + index, deadline, session)
        if failure is not None:
            report["failures"].append(f"{label}: {failure}")
        report["runs"].append(
            {"run": label, "max_examples": examples, **figures, "seconds": round(time.monotonic() - started, 1)}
        )

    report["inputs_sent"] = sum(figures["sent"] for figures in report["runs"])
    report["seconds"] = round(time.monotonic() - began, 1)
    state = server.wait_idle(timeout=60)
    report["health_after"] = state
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "openapi-fuzz.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with capsys.disabled():  # the figures are for people (and bench/results), so shown even when output is captured
        print(
            f"\nopenapi fuzz: {report['operations']} operations, {len(runs)} runs, {report['inputs_sent']} inputs sent "
            f"in {report['seconds']} s (seed {FUZZ_SEED}, tests/output/openapi-fuzz.json); failures: {len(report['failures'])}"
        )
        for figures in report["runs"]:
            print(f"  {figures['run']}: {figures['sent']} sent in {figures['seconds']} s, statuses {figures['statuses']}")

    assert not report["failures"], "\n\n".join(report["failures"])
    assert state["status"] == "healthy" and state["synthesis"]["active_requests"] == 0
    assert all(figures["sent"] > 0 for figures in report["runs"]), report["runs"]
    assert report["runs"][-1]["statuses"].get("200", 0) > 0, "the demo-voice run synthesised nothing"
