"""api/metrics.py in process: each application's own registry, bounded labels, the 429 causes, the speech figures.

The real server and real scrapes are in tests/test_metrics_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import Application
from api.errors import as_api_error
from api.metrics import Metrics
from api.rate_limit import RateLimited
from api.voices import ServedVoices
from engine.interface import QueueFull, Scheduler
from settings import Settings
from tests.helpers import admitted
from tests.test_openapi import asgi_request


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = prometheus_client.generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_counted(app: Application) -> dict[tuple[str, str, str], float]:
    """(endpoint, method, status) -> count, for the series counted so far."""
    return {
        (labels["endpoint"], labels["method"], labels["status"]): count
        for (name, pairs), count in samples(app.metrics).items()
        if name == "gsv_requests_total"
        for labels in [dict(pairs)]
    }


def test_each_application_has_its_own_registry_and_the_global_one_has_none_of_it() -> None:
    first = Application(Settings(), Path("/nonexistent"), [])
    second = Application(Settings(), Path("/nonexistent"), [])
    assert asgi_request(first, "GET", "/health").status_code == 503  # loading
    assert requests_counted(first) == {("/health", "GET", "503"): 1}
    assert requests_counted(second) == {}
    assert b"gsv_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_labels_are_route_templates_and_known_methods_whatever_the_client_sends() -> None:
    app = Application(Settings(), Path("/nonexistent"), [])
    assert asgi_request(app, "GET", "/v1/models/some-voice").status_code == 404
    assert asgi_request(app, "GET", "/v1/models/other-voice").status_code == 404
    assert asgi_request(app, "GET", "/no/such/path/123").status_code == 404
    assert asgi_request(app, "BREW", "/v1/models").status_code == 405
    assert requests_counted(app) == {
        ("/v1/models/{id}", "GET", "404"): 2,
        ("other", "GET", "404"): 1,
        ("/v1/models", "other", "405"): 1,
    }


def test_each_429_names_its_cause() -> None:
    causes = [as_api_error(error) for error in (QueueFull(3), QueueFull(3, client_limit=2), RateLimited("10.0.0.1", 5, 7))]
    assert [(error.status, error.cause) for error in causes if error is not None] == [
        (429, "server_busy"),
        (429, "client_limit"),
        (429, "rate_limit"),
    ]


def test_the_rate_limit_429_is_counted_in_process() -> None:
    app = Application(Settings(rate_limit_per_minute=1), Path("/nonexistent"), [])
    body = b'{"model": "demo", "input": "a"}'
    assert asgi_request(app, "POST", "/v1/audio/speech", body=body).status_code == 503  # loading, after the limit's check
    assert asgi_request(app, "POST", "/v1/audio/speech", body=body).status_code == 429
    found = samples(app.metrics)
    assert [found[("gsv_rejected_total", (("cause", cause),))] for cause in ("rate_limit", "server_busy", "client_limit")] == [
        1,
        0,
        0,
    ]


def test_speech_figures() -> None:
    metrics = Metrics(Scheduler(1, 0), ServedVoices({}), is_draining=lambda: False)
    metrics.speech_finished("demo", "ok", 0.5, 3.0, 2.0)
    metrics.speech_finished("demo", "disconnected", None, 1.0, 0.0)
    found = samples(metrics)
    assert found[("gsv_real_time_factor_count", ())] == 1 and found[("gsv_real_time_factor_sum", ())] == 1.5
    assert found[("gsv_time_to_first_audio_seconds_count", ())] == 1  # the second had no audio out
    assert found[("gsv_request_duration_seconds_count", ())] == 2 and found[("gsv_request_duration_seconds_sum", ())] == 4
    assert found[("gsv_audio_seconds_total", (("voice", "demo"),))] == 2
    assert found[("gsv_disconnects_total", (("stage", "during_stream"),))] == 1
    assert found[("gsv_speech_outcomes_total", (("outcome", "disconnected"),))] == 1


def test_state_gauges_are_read_at_scrape_time() -> None:
    voices, scheduler = ServedVoices({}), Scheduler(2, 1)
    draining = [False]
    metrics = Metrics(scheduler, voices, is_draining=lambda: draining[0])
    names = ("gsv_voices_ready", "gsv_draining", "gsv_active_streams")
    assert [samples(metrics)[(name, ())] for name in names] == [0, 0, 0]
    voices.state, draining[0] = "ready", True
    admitted(scheduler, "10.0.0.1")
    assert [samples(metrics)[(name, ())] for name in names] == [1, 1, 1]


@pytest.mark.parametrize(("api_key", "metrics_open", "status"), [("", False, 200), ("k", False, 401), ("k", True, 200)])
def test_the_metrics_route_needs_the_key_unless_metrics_open(api_key: str, metrics_open: bool, status: int) -> None:
    app = Application(Settings(api_key=api_key, metrics_open=metrics_open), Path("/nonexistent"), [])
    assert asgi_request(app, "GET", "/metrics").status_code == status
    assert asgi_request(app, "GET", "/metrics", headers={"authorization": "Bearer k"}).status_code == 200
