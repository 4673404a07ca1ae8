"""POST /v1/audio/speech: parse → validate → pick voice → admit → plan (segment, G2P, audio estimate) → stream.

Everything that can refuse a request happens before the 200 is sent; after it, each segment's audio is sent
as soon as it is synthesised and encoded. A failure after the 200 cannot change the status, so the stream
ends without its last body message and uvicorn breaks the connection: clients see an error, never a short
file that looks complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio
import numpy as np

from api.asgi import ClientGone, Receive, Scope, Send, read_body
from api.errors import ApiError
from api.log_fields import field
from api.metrics import Metrics
from api.rate_limit import RateLimiter
from api.read_pace import ReadPace
from api.request import Request
from api.speech_request import SpeechRequest, parse_speech_request
from api.sse import CONTENT_TYPE as SSE_CONTENT_TYPE
from api.sse import audio_delta, audio_done
from api.voices import ServedVoices, VoiceChoice
from engine.interface import (
    SAMPLE_RATE,
    AudioLimitReached,
    Cancelled,
    LineClosed,
    Place,
    QueueFull,
    Scheduler,
    SpeechPlan,
    SpeechReport,
    SpeechRun,
    Ticket,
    TokenCapReached,
    plan_speech,
)
from settings import Settings
from wavstream.output import AudioOutput

T = TypeVar("T")

logger = logging.getLogger("gsv.server")
request_log = logging.getLogger("gsv.request")


class ClientTooSlow(Exception):
    """The client stopped reading, or reads too slowly (api/read_pace.py): stop synthesising for it and drop it."""


class SpeechEndpoint:
    def __init__(
        self, settings: Settings, voices: ServedVoices, scheduler: Scheduler, rate_limiter: RateLimiter, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.voices = voices
        self.scheduler = scheduler
        self.rate_limiter = rate_limiter
        self.metrics = metrics

    async def create(self, request: Request) -> SpeechStream:
        """Every check a request can fail, in order; the stream that answers it once they all pass."""
        started = time.perf_counter()
        self.rate_limiter.check(request.client_key)
        content_type = (request.header(b"content-type") or "").lower()
        if content_type and "json" not in content_type and not content_type.startswith("text/plain"):
            raise ApiError(415, "send the request body as application/json", code="unsupported_media_type")
        settings = self.settings
        body = await read_body(request.receive, settings.max_body_bytes, request.header(b"content-length"), settings.body_timeout)
        request.body_read = True
        speech = parse_speech_request(body, settings.max_input_chars, settings.default_response_format)
        choice = self.voices.choose(speech.model, speech.voice)
        place = self.scheduler.join(request.client_key)
        ticket = place.ticket or await self.wait_in_line(place, request)
        try:
            plan = await plan_speech(
                choice.voice,
                speech.input,
                settings.first_segment_chars,
                settings.segment_chars,
                request.id,
                choice.style,
                max_seconds=settings.max_audio_seconds,  # at the model's own pace: speed 4 buys no more synthesis
                first_chunk_tokens=settings.first_chunk_tokens,
                speed=speech.speed,
                language=speech.language,
                run=partial(self.g2p_job, ticket),
            )
            output = AudioOutput(speech.response_format, SAMPLE_RATE, speech.speed)
        except BaseException:
            self.scheduler.release(ticket)
            raise
        pace = ReadPace(settings.min_read_rate, settings.send_timeout)
        return SpeechStream(request, speech, choice, plan, output, self.scheduler, ticket, pace, started, self.metrics)

    async def g2p_job(self, ticket: Ticket, work: Callable[..., T], *args: object) -> T:
        """One segment's G2P while planning: a scheduler job under the worker limit like every model call, counted."""
        self.metrics.g2p_jobs.inc()
        return await self.scheduler.run(ticket, work, *args)

    @staticmethod
    async def wait_in_line(place: Place, request: Request) -> Ticket:
        """Wait for the place, no response sent yet; a client that hangs up meanwhile leaves the line at once."""
        ticket: Ticket | None = None
        refusal: Exception | None = None  # raised outside the task group, which would wrap it in an ExceptionGroup
        async with anyio.create_task_group() as tasks:

            async def watch_disconnect() -> None:
                # The body is read, so the next message is http.disconnect (or none while the client stays).
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()  # Place.wait leaves the line (or passes on a place just granted)

            tasks.start_soon(watch_disconnect)
            try:
                ticket = await place.wait()
            except (QueueFull, LineClosed) as error:
                refusal = error
            tasks.cancel_scope.cancel()
        if refusal is not None:
            raise refusal
        if ticket is None:
            raise ClientGone
        return ticket


class SpeechStream:
    """The 200 answer of an admitted, planned request; an ASGI application that releases its ticket when done."""

    def __init__(
        self,
        request: Request,
        speech: SpeechRequest,
        choice: VoiceChoice,
        plan: SpeechPlan,
        output: AudioOutput,
        scheduler: Scheduler,
        ticket: Ticket,
        pace: ReadPace,
        started: float,
        metrics: Metrics,
    ) -> None:
        self.request, self.speech, self.choice, self.plan, self.output = request, speech, choice, plan, output
        self.scheduler, self.ticket = scheduler, ticket
        self.pace = pace
        self.started = started
        self.metrics = metrics
        self.sse = speech.stream_format == "sse"
        self.report = SpeechReport()
        self.outcome = "error"
        self.first_audio_s: float | None = None
        self.done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.stream(receive, send)
        except anyio.get_cancelled_exc_class():
            # Nothing of ours cancels this task from outside: uvicorn does, to cut the streams still running
            # SHUTDOWN_TIMEOUT seconds after SIGTERM. Re-raised, so uvicorn breaks the connection (the client
            # sees a broken transfer) and the task ends cancelled; api/protocol.py keeps its traceback out of the log.
            self.outcome = "shutdown"
            self.ticket.cancel.set()
            raise
        finally:
            self.scheduler.release(self.ticket)
            self.log()

    def frame(self, chunk: bytes) -> bytes:
        return audio_delta(chunk) if self.sse else chunk

    async def stream(self, receive: Receive, send: Send) -> None:
        """Send headers at once, then each segment's audio; end without the last message if anything fails."""

        async def send_body(chunk: bytes, audio_s: float = 0.0, more: bool = True) -> None:
            """uvicorn's send waits while the client is not reading (backpressure); give up on a slow reader."""
            waiting_since = time.perf_counter()
            self.ticket.client_behind = True  # returns at once unless the client has unread audio: then others go first
            try:
                with anyio.fail_after(max(0.0, self.pace.allowance())):
                    await send({"type": "http.response.body", "body": chunk, "more_body": more})
            except TimeoutError:
                raise ClientTooSlow from None
            finally:
                self.ticket.client_behind = False
            self.pace.record(time.perf_counter() - waiting_since, audio_s)

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not self.done:
                self.outcome = "disconnected"
                self.ticket.cancel.set()
                tasks.cancel_scope.cancel()

        async def deliver(audio: np.ndarray) -> None:
            # Stretching and encoding take CPU time (seconds for a long segment at speed 0.25): a scheduler job,
            # like synthesis, so the number of them at once is bounded by WORKERS too.
            before = self.output.seconds
            chunk = await self.scheduler.run(self.ticket, self.output.push, audio)
            if self.first_audio_s is None:
                self.first_audio_s = time.perf_counter() - self.started
            await send_body(self.frame(chunk), self.output.seconds - before)

        content_type = SSE_CONTENT_TYPE if self.sse else self.output.content_type
        headers = [
            (b"content-type", content_type.encode()),
            (b"cache-control", b"no-store"),
            (b"x-sample-rate", str(self.output.sample_rate).encode()),
            (b"x-voice", self.choice.id.encode()),
            *self.request.response_headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_disconnect)
            try:
                await send_body(self.frame(self.output.start()))
                run = SpeechRun(self.plan, self.scheduler, self.ticket, self.report, self.request.id, deliver)
                await run.run()
                before = self.output.seconds
                tail = self.frame(await self.scheduler.run(self.ticket, self.output.finish))
                if self.sse:
                    tail += audio_done(self.report.phonemes, self.report.tokens, self.report.languages)
                await send_body(tail, self.output.seconds - before, more=False)
                self.done = True
                self.outcome = "ok"
            except Cancelled:
                pass  # the client left; watch_disconnect recorded it
            except ClientTooSlow:
                self.done = True
                self.outcome = "client_too_slow"  # returning without the last body message drops the connection
            except TokenCapReached:
                self.done = True
                self.outcome = "token_cap"  # a segment's decoding hit its cap: its end would be lost, so cut visibly
            except AudioLimitReached:
                self.done = True
                self.outcome = "audio_limit"  # the text needs more audio than MAX_AUDIO_SECONDS: cut, visibly
            except Exception as error:  # after the 200, the honest report of a failure is a broken connection
                self.done = True
                logger.exception("request_id=%s synthesis failed: %r", self.request.id, error)
            finally:
                tasks.cancel_scope.cancel()

    def log(self) -> None:
        """The request's log line, and the same figures to the metrics."""
        total_s = time.perf_counter() - self.started
        self.metrics.speech_finished(self.choice.voice.name, self.outcome, self.first_audio_s, total_s, self.output.seconds)
        first = f"{self.first_audio_s:.3f}" if self.first_audio_s is not None else "-"
        request_log.info(
            "request_id=%s voice=%s chars=%d language=%s phonemes=%s format=%s stream=%s speed=%g segments=%d skipped=%d "
            "chunks=%d queued_s=%.3f ttfa_s=%s total_s=%.3f audio_s=%.2f outcome=%s %s",
            self.request.id,
            field(self.choice.id),
            len(self.speech.input),
            self.speech.language or "auto",
            ",".join(f"{code}:{count}" for code, count in sorted(self.report.languages.items())) or "-",
            self.speech.response_format,
            self.speech.stream_format,
            self.speech.speed,
            self.report.segments_done,
            self.report.segments_skipped,
            self.report.chunks,
            self.ticket.queued_s,
            first,
            total_s,
            self.output.seconds,
            self.outcome,
            self.request.log_identity(),
        )
