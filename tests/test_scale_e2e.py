"""Three replicas behind a real HAProxy configured by deploy/haproxy/haproxy.cfg (bench/scale.py, in small).

The scenarios are bench/scale.py's functions; here they run with few requests and short texts. Each test leaves
the three replicas running and in rotation for the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.haproxy import RESILIENCE, RunningBalancer, balancer, replica_name
from bench.scale import (
    SETTINGS,
    Replicas,
    expected_lengths,
    kill_mid_stream,
    rolling_restart,
    speak,
    spread,
    wait_status,
)
from bench.texts import SENTENCE, SHORT
from tests.helpers import start_demo_server
from tests.server_process import ServerProcess, free_port

TWO_SENTENCES = SENTENCE * 2  # about 10 s of audio: still streaming on every replica when one is killed


@dataclass
class Cluster:
    replicas: Replicas
    front: RunningBalancer
    expected: dict[str, int]

    def all_up(self) -> None:
        for index in range(len(self.replicas.ports)):
            wait_status(self.front, replica_name(index), "UP")


@pytest.fixture(scope="module")
def cluster(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    models = tmp_path_factory.mktemp("scale-models")

    def start(index: int, port: int) -> ServerProcess:
        return start_demo_server(f"scale-{replica_name(index)}", models, SETTINGS, port=port)

    replicas = Replicas(start)
    try:
        replicas.start_all()
        with balancer(replicas.ports) as front:
            running = Cluster(replicas, front, expected_lengths(replicas.server(0).base_url, [SHORT, SENTENCE, TWO_SENTENCES]))
            running.all_up()
            yield running
    finally:
        replicas.stop_all()


@pytest.mark.e2e
def test_requests_spread_over_every_replica_and_stream_through_the_balancer(cluster: Cluster) -> None:
    figures = spread(cluster.front, cluster.replicas, [SENTENCE] * 3, cluster.expected, clients=3)
    assert figures["outcomes"] == {"complete": 3}
    assert sorted(figures["haproxy_sessions"]) == ["replica1", "replica2", "replica3"]
    assert all(count >= 1 for count in figures["haproxy_sessions"].values()), figures
    assert figures["responses_by_replica"] == figures["haproxy_sessions"], figures
    assert all(jobs > 0 for jobs in figures["synthesis_jobs"].values()), figures
    # The first audio bytes passed through while the replica still had the request in progress: not buffered.
    assert figures["all_first_audio_while_synthesising"], figures


@pytest.mark.e2e
def test_a_dead_replica_costs_no_request_with_the_recommended_lines_and_some_without_them(cluster: Cluster) -> None:
    """A fourth server line points at a port nothing listens on (a replica that died before the balancer noticed).
    With the health check, retries and redispatch every request succeeds; without them, some get a 503."""
    backends = [*cluster.replicas.ports, free_port()]
    outcomes = {}
    for name, without in (("recommended", ()), ("without resilience", RESILIENCE)):
        with balancer(backends, without=without) as front:
            results = [speak(front.url, SHORT, cluster.expected[SHORT]) for _ in range(6)]
        outcomes[name] = [result.outcome for result in results]
    assert outcomes["recommended"] == ["complete"] * 6, outcomes
    assert "status_5xx" in outcomes["without resilience"], outcomes
    assert set(outcomes["without resilience"]) <= {"complete", "status_5xx"}, outcomes


@pytest.mark.e2e
def test_a_killed_replica_breaks_only_its_own_streams_visibly_and_later_requests_succeed(cluster: Cluster) -> None:
    figures = kill_mid_stream(cluster.front, cluster.replicas, TWO_SENTENCES, cluster.expected, 3, 5.0, SHORT)
    killed = cluster.replicas.index_of(figures["killed"])
    try:
        assert figures["its_streams"] >= 1, figures
        # Its streams raised in the client (an incomplete chunked body), with fewer bytes than the whole audio.
        assert figures["its_streams_outcomes"] == {"broken_stream": figures["its_streams"]}, figures
        assert all("RemoteProtocolError" in error for error in figures["its_streams_errors"]), figures
        assert figures["other_streams_outcomes"] == {"complete": 3 - figures["its_streams"]}, figures
        assert figures["requests_after_kill"] >= 1 and figures["none_failed_after_kill"], figures
        assert figures["killed"] not in figures["requests_after_kill_by_replica"], figures
        # A health check every second, 2 failures in a row: out of rotation in about 2 s (10 s: a loaded CI).
        assert figures["marked_down_after_s"] < 10, figures
    finally:
        cluster.replicas.start(killed)
        cluster.all_up()


@pytest.mark.e2e
def test_a_rolling_restart_loses_no_request_that_had_not_started_streaming(cluster: Cluster) -> None:
    figures = rolling_restart(cluster.front, cluster.replicas, [SHORT, SENTENCE], cluster.expected, raw_clients=2, sdk_clients=1)
    assert [step["replica"] for step in figures["steps"]] == ["replica1", "replica2", "replica3"]
    assert figures["raw_sent"] >= 6 and figures["sdk_sent"] >= 1, figures
    assert figures["raw_lost_before_streaming"] == 0, figures
    assert set(figures["sdk_outcomes"]) == {"complete"}, figures
    assert figures["nothing_lost_before_streaming"], figures
