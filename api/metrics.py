"""Prometheus metrics at GET /metrics, from one `CollectorRegistry` per Application (never the library's global one).

Counters and histograms are updated where things happen: `Application.handle` counts each answered request,
its 429s and its clients gone before the response; `SpeechStream` records each speech request's figures where it
writes its log line, so the metrics and the log agree. Gauges (queue, streams, jobs, voices, draining) are read
from the scheduler and the voices at scrape time by `StateCollector`, so they cannot drift from the state.
Label values are bounded: endpoints are route templates (or `other`), methods a fixed list (or `other`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.request import Request
from api.responses import Response
from api.voices import ServedVoices
from engine.interface import Scheduler

#: Seconds to the first audio: a warm server answers in well under a second, a loaded one in seconds.
FIRST_AUDIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0)
#: Seconds a speech request lasts, up to MAX_AUDIO_SECONDS' default of 1200 s of audio.
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
#: Total seconds per audio second: above 1, the listener waits for audio.
REAL_TIME_FACTOR_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

#: The `method` label: any other method a client invents counts as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
REJECTION_CAUSES = ("server_busy", "queue_timeout", "client_limit", "rate_limit")
DISCONNECT_STAGES = ("before_response", "during_stream")
SPEECH_OUTCOMES = ("ok", "disconnected", "client_too_slow", "audio_limit", "token_cap", "shutdown", "error")


class StateCollector(Collector):
    """The gauges of the application's state, read when Prometheus scrapes."""

    def __init__(self, scheduler: Scheduler, voices: ServedVoices, is_draining: Callable[[], bool]) -> None:
        self.scheduler = scheduler
        self.voices = voices
        self.is_draining = is_draining

    def collect(self) -> Iterator[Metric]:
        admission, slots = self.scheduler.admission, self.scheduler.slots
        yield GaugeMetricFamily(
            "gsv_queue_depth",
            "Requests waiting in line for their place plus synthesis jobs waiting for a worker.",
            admission.requests_waiting + slots.jobs_waiting,
        )
        yield GaugeMetricFamily("gsv_active_streams", "Admitted speech requests in progress.", admission.requests_in_progress)
        yield GaugeMetricFamily("gsv_synthesis_jobs_running", "Synthesis jobs running on a worker.", slots.jobs_running)
        load = GaugeMetricFamily("gsv_voice_load_seconds", "Seconds each voice took to load.", labels=["voice"])
        for name, seconds in sorted(self.voices.registry.load_seconds.items()):
            load.add_metric([name], seconds)
        yield load
        voices = self.voices
        yield GaugeMetricFamily("gsv_voices_ready", "1 once the voices are loaded, else 0.", int(voices.state == "ready"))
        yield GaugeMetricFamily("gsv_draining", "1 from SIGTERM on (/health answers draining), else 0.", int(self.is_draining()))


class Metrics:
    """Every metric of one application, and the /metrics handler that exposes them."""

    def __init__(self, scheduler: Scheduler, voices: ServedVoices, is_draining: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "gsv_requests", "HTTP requests answered.", ["endpoint", "method", "status", "format"], registry=registry
        )
        self.time_to_first_audio = Histogram(
            "gsv_time_to_first_audio_seconds",
            "Speech requests: seconds from arrival to the first audio sent.",
            buckets=FIRST_AUDIO_BUCKETS,
            registry=registry,
        )
        self.request_duration = Histogram(
            "gsv_request_duration_seconds",
            "Speech requests: seconds from arrival to the end of the stream, whatever its outcome.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.audio_seconds = Counter("gsv_audio_seconds", "Seconds of audio sent.", ["voice"], registry=registry)
        self.real_time_factor = Histogram(
            "gsv_real_time_factor",
            "Speech requests finished whole: total seconds / audio seconds (above 1: slower than real time).",
            buckets=REAL_TIME_FACTOR_BUCKETS,
            registry=registry,
        )
        self.rejected = Counter("gsv_rejected", "429 answers, by cause.", ["cause"], registry=registry)
        self.disconnects = Counter("gsv_disconnects", "Clients gone before or during their answer.", ["stage"], registry=registry)
        self.speech_outcomes = Counter(
            "gsv_speech_outcomes", "Speech streams by outcome (as in their log line).", ["outcome"], registry=registry
        )
        self.g2p_jobs = Counter(
            "gsv_g2p_jobs", "Segments read by G2P before their request's 200, each a job under WORKERS.", registry=registry
        )
        # Known label values start at 0, so that rate() and alerts see a series before the first event.
        for cause in REJECTION_CAUSES:
            self.rejected.labels(cause)
        for stage in DISCONNECT_STAGES:
            self.disconnects.labels(stage)
        for outcome in SPEECH_OUTCOMES:
            self.speech_outcomes.labels(outcome)
        registry.register(StateCollector(scheduler, voices, is_draining))

    def request_answered(self, endpoint: str, method: str, status: int, response_format: str = "") -> None:
        """`endpoint`: a route template or "other"; `response_format`: a speech stream's audio format, else ""."""
        self.requests.labels(endpoint, method if method in METHODS else "other", str(status), response_format).inc()

    def speech_finished(self, voice: str, outcome: str, first_audio_s: float | None, total_s: float, audio_s: float) -> None:
        """One speech stream's figures, the ones of its log line."""
        self.speech_outcomes.labels(outcome).inc()
        if outcome == "disconnected":
            self.disconnects.labels("during_stream").inc()
        self.request_duration.observe(total_s)
        if first_audio_s is not None:
            self.time_to_first_audio.observe(first_audio_s)
        self.audio_seconds.labels(voice).inc(audio_s)
        if outcome == "ok" and audio_s > 0:
            self.real_time_factor.observe(total_s / audio_s)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: the text exposition format."""
        headers = [(b"cache-control", b"no-store"), *request.response_headers]
        return Response(generate_latest(self.registry), 200, headers, CONTENT_TYPE_LATEST.encode())
