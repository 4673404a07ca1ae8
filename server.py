"""OpenAI-compatible, streaming text-to-speech for GPT-SoVITS voices: the ASGI application and its entry point.

Request path of POST /v1/audio/speech:
parse -> validate -> pick voice -> segment -> schedule -> synthesise -> encode -> send.
`SpeechServer` is the one application object: it owns the settings, the voice registry and the scheduler.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import re
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import numpy as np
import uvicorn

from api.asgi import ClientGone, Headers, Receive, Scope, Send, header, read_body, send_json
from api.errors import ApiError, bad_request
from api.protocol import guarded_protocol
from api.rate_limit import RateLimiter
from api.sse import CONTENT_TYPE as SSE_CONTENT_TYPE
from api.sse import audio_delta, audio_done
from api.speech_request import SpeechRequest, parse_speech_request
from api.voice_choice import choose_voice, voice_id
from engine.registry import VoiceRegistry, load_voices
from engine.scheduler import QueueFull, Scheduler, Ticket
from engine.settings import Settings
from engine.speech import NothingToSay, SpeechPlan, SpeechReport, plan_speech, speak
from engine.synthesis import SAMPLE_RATE, Cancelled
from engine.voice_folder import VoiceError, VoiceFolder, inspect_voice, scan, verdict
from wavstream.output import AudioOutput

logger = logging.getLogger("gsv.server")
request_log = logging.getLogger("gsv.request")

Handler = Callable[[Scope, Receive, Send, "RequestContext"], Awaitable[None]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
OWNER = "gsv-speech"
PLAYGROUND = Path(__file__).resolve().parent / "playground" / "index.html"
#: Open without the API key: health checks, the Space's page, and the voice listings (Open WebUI
#: fetches those without Authorization).
OPEN_PATHS = frozenset({"/health", "/", "/openapi.json", "/v1/audio/voices", "/v1/audio/models"})
OPENAPI = Path(__file__).resolve().parent / "api" / "openapi.json"
#: The page needs nothing from other hosts; this keeps it that way (the Space embeds it in an iframe).
PLAYGROUND_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data: blob:; media-src 'self' blob: mediastream: data:; connect-src 'self'"
)


class ClientTooSlow(Exception):
    """The client read nothing for SEND_TIMEOUT seconds: stop synthesising for it and drop the connection."""


class RequestContext:
    """Per-request values every handler needs: its id and the headers every response carries."""

    def __init__(self, request_id: str, cors: Headers) -> None:
        self.request_id = request_id
        self.headers: Headers = [(b"x-request-id", request_id.encode()), *cors]
        self.body_read = False


class SpeechServer:
    def __init__(self, settings: Settings, genie_data_dir: Path, folders: list[tuple[str, VoiceFolder | VoiceError]]) -> None:
        self.settings = settings
        self.genie_data_dir = genie_data_dir
        self.folders = folders
        self.scheduler = Scheduler(settings.workers, settings.queue_size)
        self.registry = VoiceRegistry()
        self.state = "loading"
        self.created = int(time.time())
        self.origins = {origin.strip() for origin in settings.allowed_origins.split(",") if origin.strip()}
        self.aliases = settings.aliases()
        self.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
        # Read once: both files ship with the code and are served on every visit to the Space.
        self.playground_page = PLAYGROUND.read_bytes()
        self.openapi_document = OPENAPI.read_bytes()
        self.routes: dict[str, dict[str, Handler]] = {
            "/v1/audio/speech": {"POST": self.speech},
            "/v1/models": {"GET": self.list_models},
            "/v1/audio/voices": {"GET": self.list_voices},
            "/v1/audio/models": {"GET": self.list_audio_models},
            "/health": {"GET": self.health},
            "/": {"GET": self.playground},
            "/openapi.json": {"GET": self.openapi},
        }

    # ---- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tasks:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    tasks.start_soon(self.load)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    tasks.cancel_scope.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def load(self) -> None:
        """Load every voice in a thread while /health answers 'loading'."""
        started = time.perf_counter()
        self.registry = await anyio.to_thread.run_sync(
            load_voices, self.folders, self.genie_data_dir, self.settings.ort_threads, abandon_on_cancel=True
        )
        if len(self.registry) == 0:
            self.state = "no_voices"
            logger.error(
                "no voice could be loaded from %s: add a voice folder (see models/README.md) or run with --demo",
                self.settings.models_dir,
            )
            return
        for alias, target in self.aliases.items():
            name, _, style = target.partition("/")
            voice = self.registry.get(name)
            if voice is None or (style and voice.style(style) is None):
                logger.warning("VOICE_ALIASES: %s=%s names no loaded voice or style; requests using it get an error", alias, target)
        self.state = "ready"
        logger.info("ready voices=%s load_s=%.1f", ",".join(self.registry.names), time.perf_counter() - started)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        supplied = header(scope, b"x-request-id")
        request_id = supplied if supplied and _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        context = RequestContext(request_id, self.cors_headers(header(scope, b"origin")))
        path = route_path(scope)
        method = scope["method"]
        try:
            if method == "OPTIONS" and header(scope, b"access-control-request-method"):
                await self.preflight(scope, send, context)
                return
            handlers = self.routes.get(path)
            if handlers is None and path.startswith("/v1/models/"):
                handlers = {"GET": self.get_model}
            if handlers is None:
                raise ApiError(404, f"no route for {method} {path}", code="not_found")
            handler = handlers.get(method)
            if handler is None:
                allow = ", ".join(handlers).encode()
                raise ApiError(405, f"{method} is not allowed on {path}", code="method_not_allowed", headers=[(b"allow", allow)])
            if path not in OPEN_PATHS:
                self.authorize(scope)
            await handler(scope, receive, send, context)
        except ApiError as error:
            headers = [*error.headers, *context.headers]
            if not context.body_read and declares_body(scope):
                # Refused before its body was read (maybe after `Expect: 100-continue`, so the client will not
                # send it): close the connection, or uvicorn would take the next request for that body.
                headers.append((b"connection", b"close"))
            await send_json(send, error.status, None, headers, raw=error.body())
            request_log.info(
                "request_id=%s method=%s path=%s status=%d code=%s outcome=rejected",
                request_id, method, path, error.status, error.code,
            )
        except ClientGone:
            request_log.info("request_id=%s path=%s outcome=disconnected_before_response", request_id, path)

    # ---- cross-cutting ----------------------------------------------------------------------

    def authorize(self, scope: Scope) -> None:
        expected = self.settings.api_key
        if not expected:
            return
        supplied = header(scope, b"authorization") or ""
        scheme, _, token = supplied.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <API_KEY>'",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b"Bearer")],
            )

    def cors_headers(self, origin: str | None) -> Headers:
        if origin is None:
            return []
        if "*" in self.origins:
            allowed = "*"
        elif origin in self.origins:
            allowed = origin
        else:
            return []
        headers = [
            (b"access-control-allow-origin", allowed.encode()),
            (b"access-control-expose-headers", b"x-request-id, x-sample-rate, x-voice"),
        ]
        if allowed != "*":
            headers.append((b"vary", b"Origin"))
        return headers

    async def preflight(self, scope: Scope, send: Send, context: RequestContext) -> None:
        requested = header(scope, b"access-control-request-headers") or "authorization, content-type"
        headers = [
            *context.headers,
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", requested.encode("latin-1")),
            (b"access-control-max-age", b"600"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def ready_registry(self) -> VoiceRegistry:
        if self.state == "loading":
            raise ApiError(503, "voices are still loading; retry shortly", code="loading", headers=[(b"retry-after", b"10")])
        return self.registry

    # ---- small endpoints --------------------------------------------------------------------

    async def health(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        synthesis = {
            "workers": self.scheduler.workers,
            "running": self.scheduler.running,
            "waiting": self.scheduler.waiting,
            "active_requests": self.scheduler.active,
            "jobs_run": self.scheduler.jobs_run,
        }
        if self.state == "ready":
            payload = {
                "status": "healthy",
                "models": self.registry.names,
                "api_key_required": bool(self.settings.api_key),
                "synthesis": synthesis,
            }
            await send_json(send, 200, payload, context.headers)
        else:
            payload = {"status": self.state, "models": self.registry.names, "api_key_required": bool(self.settings.api_key)}
            await send_json(send, 503, payload, context.headers)

    async def playground(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        """The Space shows `/` in an iframe: a page to try the voices."""
        csp = [(b"content-security-policy", PLAYGROUND_CSP)]
        await send_bytes(send, self.playground_page, b"text/html; charset=utf-8", [*csp, *context.headers])

    async def openapi(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        """The hand-written OpenAPI document (tests/test_openapi.py keeps it true)."""
        await send_bytes(send, self.openapi_document, b"application/json", context.headers)

    async def list_voices(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        """Open WebUI's and Home Assistant's shape; `id` is what `voice` accepts, `model` what `model` accepts."""
        voices = []
        for voice in self.registry:
            for style in [None, *voice.styles]:
                label = f"{voice.name} ({style})" if style else voice.name
                voices.append({"id": voice_id(voice.name, style), "name": label, "model": voice.name, "style": style})
        await send_json(send, 200, {"voices": voices}, context.headers)

    async def list_audio_models(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        await send_json(send, 200, {"models": [{"id": name} for name in self.registry.names]}, context.headers)

    def model_object(self, name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": OWNER}

    async def list_models(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        payload = {"object": "list", "data": [self.model_object(name) for name in self.registry.names]}
        await send_json(send, 200, payload, context.headers)

    async def get_model(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        name = route_path(scope)[len("/v1/models/") :]
        voice = self.registry.get(name)
        if voice is None:
            raise ApiError(404, f"model '{name}' not found; available: {', '.join(self.registry.names) or 'none'}", code="model_not_found", param="model")
        await send_json(send, 200, self.model_object(voice.name), context.headers)

    # ---- POST /v1/audio/speech --------------------------------------------------------------

    async def speech(self, scope: Scope, receive: Receive, send: Send, context: RequestContext) -> None:
        started = time.perf_counter()
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.rate_limiter.take(client)
        if wait is not None:
            raise ApiError(
                429, f"too many requests from {client}: at most {self.settings.rate_limit_per_minute} per minute; retry after {wait} s",
                type="rate_limit_error", code="rate_limit_exceeded", headers=[(b"retry-after", str(wait).encode())],
            )
        content_type = (header(scope, b"content-type") or "").lower()
        if content_type and "json" not in content_type and not content_type.startswith("text/plain"):
            raise ApiError(415, "send the request body as application/json", code="unsupported_media_type")
        try:
            with anyio.fail_after(self.settings.body_timeout):
                body = await read_body(receive, self.settings.max_body_bytes, header(scope, b"content-length"))
            context.body_read = True
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.settings.body_timeout} s", code="request_timeout") from None
        request = parse_speech_request(body, self.settings.max_input_chars, self.settings.default_response_format)
        choice = choose_voice(self.ready_registry(), request.model, request.voice, self.aliases)
        try:
            ticket = self.scheduler.admit()
        except QueueFull as full:
            raise ApiError(
                429, f"the server is busy; retry after {full.retry_after} s",
                type="rate_limit_error", code="rate_limit_exceeded",
                headers=[(b"retry-after", str(full.retry_after).encode())],
            ) from None
        fields = {"voice": choice.id, "chars": len(request.input), "format": request.response_format}
        try:
            try:
                plan = await plan_speech(
                    choice.voice, request.input, self.settings.first_segment_chars, self.settings.segment_chars,
                    context.request_id, choice.style,
                )
            except NothingToSay as error:
                raise bad_request(str(error), "input", "nothing_to_say") from None
            await self.stream(plan, request, ticket, send, receive, context, started, fields)
        finally:
            self.scheduler.release(ticket)

    async def stream(
        self, plan: SpeechPlan, request: SpeechRequest, ticket: Ticket, send: Send, receive: Receive,
        context: RequestContext, started: float, fields: dict[str, object],
    ) -> None:
        """Send headers at once, then each segment's audio; break the connection if synthesis fails midway.

        Success ends with an empty final body message; failure returns without one, so uvicorn closes the
        connection and clients see a broken transfer instead of a short file that looks complete.
        """
        output = AudioOutput(request.response_format, SAMPLE_RATE, request.speed)
        sse = request.stream_format == "sse"
        frame: Callable[[bytes], bytes] = audio_delta if sse else (lambda chunk: chunk)

        async def send_body(chunk: bytes, more: bool = True) -> None:
            """uvicorn's send waits while the client is not reading (backpressure); give up after SEND_TIMEOUT."""
            try:
                with anyio.fail_after(self.settings.send_timeout):
                    await send({"type": "http.response.body", "body": chunk, "more_body": more})
            except TimeoutError:
                raise ClientTooSlow from None

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", (SSE_CONTENT_TYPE if sse else output.content_type).encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-sample-rate", str(output.sample_rate).encode()),
                    (b"x-voice", str(fields["voice"]).encode()),
                    *context.headers,
                ],
            }
        )
        report = SpeechReport()
        state = {"outcome": "error", "first_audio": None, "done": False}

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state["done"]:
                state["outcome"] = "disconnected"
                ticket.cancel.set()
                tasks.cancel_scope.cancel()

        async def deliver(audio: np.ndarray) -> None:
            chunk = await anyio.to_thread.run_sync(output.push, audio)
            if state["first_audio"] is None:
                state["first_audio"] = time.perf_counter() - started
            await send_body(frame(chunk))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_disconnect)
            try:
                await send_body(frame(output.start()))
                await speak(plan, self.scheduler, ticket, report, context.request_id, deliver)
                tail = frame(await anyio.to_thread.run_sync(output.finish))
                if sse:
                    tail += audio_done(report.phonemes, report.tokens)
                await send_body(tail, more=False)
                state["done"] = True
                state["outcome"] = "ok"
            except Cancelled:
                pass  # the client left; watch_disconnect recorded it
            except ClientTooSlow:
                state["done"] = True
                state["outcome"] = "client_too_slow"  # returning without the last body message drops the connection
            except Exception as error:  # after the 200, the honest report of a failure is a broken connection
                state["done"] = True
                logger.exception("request_id=%s synthesis failed: %r", context.request_id, error)
            finally:
                tasks.cancel_scope.cancel()
        first = state["first_audio"]
        request_log.info(
            "request_id=%s voice=%s chars=%d format=%s stream=%s speed=%g segments=%d skipped=%d ttfa_s=%s total_s=%.3f "
            "audio_s=%.2f outcome=%s",
            context.request_id, fields["voice"], fields["chars"], fields["format"], request.stream_format, request.speed,
            report.segments_done, report.segments_skipped, f"{first:.3f}" if first is not None else "-",
            time.perf_counter() - started, output.seconds, state["outcome"],
        )


def declares_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    return (length is not None and length.strip() != "0") or header(scope, b"transfer-encoding") is not None


def route_path(scope: Scope) -> str:
    """The path with one trailing slash dropped ("/v1/models/" lists models); "/v1/models//" stays a model id."""
    path: str = scope["path"]
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


async def send_bytes(send: Send, body: bytes, content_type: bytes, headers: Headers) -> None:
    start_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": [*start_headers, *headers]})
    await send({"type": "http.response.body", "body": body})


# ---- process entry point -------------------------------------------------------------------


class StoppingServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process dies "killed by signal".

    For us SIGTERM is the normal way a Space or an orchestrator stops the server: once shutdown has
    finished (streams completed or aborted within SHUTDOWN_TIMEOUT), exit 0.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        self._captured_signals.clear()


def configure_logging(level: str) -> None:
    """Configure before genie_tts is imported: its own basicConfig then does nothing."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)


def prepare(settings: Settings) -> tuple[Path, list[tuple[str, VoiceFolder | VoiceError]]]:
    """Resolve GenieData, import Genie, build the demo voice if asked, and validate the voice folders."""
    from engine import demo
    from engine.genie import import_genie, missing_data
    from engine.genie_data import resolve_genie_data

    if not settings.demo:
        genie_data_dir = resolve_genie_data(settings.genie_data_dir, settings.genie_download)
        import_genie(genie_data_dir)
        return genie_data_dir, scan(settings.models_dir, genie_data_dir)

    root = settings.cache_dir / f"demo-{demo.BUILD_VERSION}"
    if missing_data(settings.genie_data_dir):
        voice_dir, genie_data_dir = demo.ensure_demo(root)  # with its stand-in GenieData
    else:
        genie_data_dir = settings.genie_data_dir
        import_genie(genie_data_dir)
        voice_dir, _ = demo.ensure_demo(root)
    import_genie(genie_data_dir)
    logger.warning("voice 'demo' comes from %s: random weights, it produces noise, not speech", voice_dir)
    try:
        demo_voice: VoiceFolder | VoiceError = inspect_voice(voice_dir, genie_data_dir)
    except VoiceError as error:
        demo_voice = error
    folders = [entry for entry in scan(settings.models_dir, genie_data_dir) if entry[0] != "demo"]
    return genie_data_dir, [*folders, ("demo", demo_voice)]


def check(settings: Settings) -> int:
    """`--check`: one line per voice, non-zero exit on any error."""
    from engine.genie import missing_data

    data = settings.genie_data_dir
    absent = missing_data(data)
    print(f"GenieData {data}: {'ok' if not absent else 'missing ' + ', '.join(absent)}")
    entries = scan(settings.models_dir, data)
    if not entries:
        print(f"ERROR no voice folders in {settings.models_dir}")
        return 1
    errors = 0
    for name, folder in entries:
        if isinstance(folder, VoiceError):
            errors += 1
            print(f"ERROR {name}: {folder}")
        else:
            print(verdict(folder))
    return 1 if errors else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="OpenAI-compatible streaming TTS server for GPT-SoVITS voices (Genie-TTS).")
    parser.add_argument("--host", help="bind address (HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (PORT, default 7860)")
    parser.add_argument("--models", type=Path, help="voice folders (MODELS_DIR, default ./models)")
    parser.add_argument("--demo", action="store_true", default=None, help="also serve the generated demo voice (DEMO=1)")
    parser.add_argument("--check", action="store_true", help="validate the models folder and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env().with_overrides(host=args.host, port=args.port, models_dir=args.models, demo=args.demo)
        settings.validate()
    except ValueError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if args.check:
        return check(settings)
    configure_logging(settings.log_level)
    from engine.genie import GenieDataMissing

    try:
        genie_data_dir, folders = prepare(settings)
    except GenieDataMissing as error:
        logger.error("%s", error)
        return 1
    app = SpeechServer(settings, genie_data_dir, folders)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_protocol(settings.head_timeout, settings.max_connections),
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )
    StoppingServer(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
