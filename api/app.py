"""The ASGI application: the one object that owns the settings, the voices, the scheduler and the limits.

Every HTTP request goes through `handle`: an id and the CORS headers, then the CORS preflight or the route
(404/405), the API key unless the route is open, and the route's handler, which returns the response to send.
Errors are answered in one place: an `ApiError`, or an exception of the engine or of a limit translated by
`api.errors.EXCEPTION_TABLE`; anything else is a bug, answered 500 with the request id and logged with its
traceback. Once a response has started, an error can only break the connection.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio

from api.access import Access
from api.asgi import ClientGone, Headers, Message, Receive, Scope, Send
from api.client_address import ClientAddresses
from api.endpoints import ReadOnlyEndpoints
from api.errors import ApiError, as_api_error, internal_error, shutting_down
from api.log_fields import field
from api.metrics import Metrics
from api.rate_limit import RateLimiter
from api.request import Request
from api.responses import NOSNIFF, ErrorResponse
from api.routing import Route, RouteTable
from api.speech import SpeechEndpoint, SpeechStream
from api.voices import ServedVoices
from api.websocket import refuse_websocket
from engine.interface import FoundVoices, Scheduler, tune_allocator
from settings import Settings

logger = logging.getLogger("gsv.server")
request_log = logging.getLogger("gsv.request")


class Application:
    """`python server.py` runs one; tests make their own with other settings or voices."""

    def __init__(self, settings: Settings, genie_data_dir: Path, folders: FoundVoices) -> None:
        #: Before the voices load, whatever made this application (server.py, `uvicorn server:app`, a test).
        self.allocator_tuned = tune_allocator()
        self.settings = settings
        self.genie_data_dir = genie_data_dir
        self.folders = folders
        self.voices = ServedVoices(settings.aliases())
        self.scheduler = Scheduler(
            settings.workers,
            extra_places=settings.queue_size,
            per_client=settings.max_streams_per_client,
            max_wait=settings.max_queue_wait,
        )
        self.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
        self.client_addresses = ClientAddresses.from_settings(settings)
        self.access = Access(settings.api_key, settings.cors_origins())
        #: Set by server.py on SIGTERM: /health answers 503 "draining" while requests are still served (DRAIN_SECONDS).
        self.draining = False
        self.metrics = Metrics(self.scheduler, self.voices, is_draining=lambda: self.draining)
        read_only = ReadOnlyEndpoints(
            self.voices, self.scheduler, api_key_required=bool(settings.api_key), is_draining=lambda: self.draining
        )
        speech = SpeechEndpoint(settings, self.voices, self.scheduler, self.rate_limiter, self.metrics)
        self.routes = RouteTable(
            [
                Route("/v1/audio/speech", "POST", speech.create),
                Route("/v1/models", "GET", read_only.list_models),
                Route("/v1/models/{id}", "GET", read_only.get_model),
                # Open WebUI fetches the voice listings without Authorization.
                Route("/v1/audio/voices", "GET", read_only.list_voices, open=True),
                Route("/v1/audio/models", "GET", read_only.list_audio_models, open=True),
                Route("/health", "GET", read_only.health, open=True),
                Route("/livez", "GET", read_only.liveness, open=True),
                Route("/", "GET", read_only.playground, open=True),
                Route("/openapi.json", "GET", read_only.openapi, open=True),
                Route("/metrics", "GET", self.metrics.endpoint, open=settings.metrics_open),  # Prometheus sends the bearer key
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.handle(Request(scope, receive, self.client_addresses.resolve(scope)), send)
        elif scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Start answering at once; the voices load in the background while /health says 'loading'."""
        async with anyio.create_task_group() as tasks:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    logger.info("%s", self.client_addresses.describe())
                    settings = self.settings
                    tasks.start_soon(
                        self.voices.load,
                        self.folders,
                        self.genie_data_dir,
                        settings.ort_threads,
                        settings.models_dir,
                        settings.cache_dir,
                        settings.t2s_precision,
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    tasks.cancel_scope.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def handle(self, request: Request, send: Send) -> None:
        request.response_headers += self.access.cors_headers(request)
        response_started = False
        status: int | None = None  # as sent, for gsv_requests_total
        response_format = ""
        always = [NOSNIFF, *self.access.vary_headers()]
        head = request.method == "HEAD"

        async def tracking_send(message: Message) -> None:
            """Every response this application sends (errors, preflights, streams) carries the `always` headers.

            A HEAD gets the GET's status and headers (its Content-Length too) and no body bytes, whatever server runs us.
            """
            nonlocal response_started, status
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *always, *self.closing(message["headers"])]}
                status = message["status"]
            elif head and message.get("body"):
                message = {**message, "body": b""}
            response_started = True
            await send(message)

        try:
            if self.access.is_preflight(request):
                response = self.access.preflight(request, self.routes.methods)
            else:
                self.access.refuse_foreign_origin(request)
                route = self.routes.match(request)
                if not route.open:
                    self.access.authorize(request)
                response = await route.handler(request)
                if isinstance(response, SpeechStream):
                    response_format = response.speech.response_format
            await response(request.scope, request.receive, tracking_send)
        except ClientGone:
            self.metrics.disconnects.labels("before_response").inc()
            request_log.info(
                "request_id=%s path=%s outcome=disconnected_before_response %s",
                request.id,
                field(request.path),
                request.log_identity(),
            )
        except anyio.get_cancelled_exc_class():
            # Cut by uvicorn SHUTDOWN_TIMEOUT seconds after SIGTERM (see SpeechStream, which logs its own line).
            if not response_started:
                await self.refuse(request, shutting_down(), tracking_send)  # then uvicorn closes the connection
            raise
        except Exception as error:
            if response_started:  # too late for an error response: returning unfinished makes uvicorn break the connection
                logger.exception("request_id=%s path=%s failed after its response started", request.id, field(request.path))
                return
            api_error = as_api_error(error)
            if api_error is None:
                logger.exception(
                    "request_id=%s method=%s path=%s failed: %r", request.id, field(request.method), field(request.path), error
                )
                api_error = internal_error(request.id)
            await self.refuse(request, api_error, tracking_send)
        finally:
            if status is not None:  # a stream counts once it has ended, with the 200 it started with
                self.metrics.request_answered(self.routes.endpoint(request.path), request.method, status, response_format)

    def closing(self, headers: Headers) -> Headers:
        """While draining, `Connection: close` on every response: a client's next request opens a new connection,
        which the balancer sends to a replica that is not going away."""
        if not self.draining or any(name.lower() == b"connection" for name, _ in headers):
            return []
        return [(b"connection", b"close")]

    async def refuse(self, request: Request, error: ApiError, send: Send) -> None:
        headers = [*request.response_headers]
        if not request.body_read and request.declares_body():
            # Refused before its body was read (maybe after `Expect: 100-continue`, so the client will not
            # send it): close the connection, or uvicorn would take the next request for that body.
            headers.append((b"connection", b"close"))
        await ErrorResponse(error, headers)(request.scope, request.receive, send)
        if error.cause is not None:
            self.metrics.rejected.labels(error.cause).inc()
        outcome = {"internal_error": "error", "shutting_down": "shutdown"}.get(error.code or "", "rejected")
        request_log.info(
            "request_id=%s method=%s path=%s status=%d code=%s outcome=%s %s",
            request.id,
            field(request.method),
            field(request.path),
            error.status,
            error.code,
            outcome,
            request.log_identity(),
        )
