"""The benchmark's instruments: stall arithmetic, percentiles, and timing a real streamed request."""

from __future__ import annotations

import pytest

from bench.measure import BYTES_PER_SECOND, percentile, playback_stall, stream_request
from tests.server_process import ServerProcess


def test_no_stall_when_audio_arrives_ahead_of_playback() -> None:
    second = BYTES_PER_SECOND
    assert playback_stall([(1.0, 2 * second), (2.5, 4 * second), (4.0, 6 * second)]) == 0.0


def test_stall_is_the_worst_lateness() -> None:
    second = BYTES_PER_SECOND
    # 1 s of audio at t=1: the second chunk is due at t=2 but comes at t=3.5 (1.5 s late); the third is
    # due at t=3 and comes at t=4 (1 s late): the listener waited 1.5 s in all.
    assert abs(playback_stall([(1.0, second), (3.5, 2 * second), (4.0, 3 * second)]) - 1.5) < 1e-9
    assert playback_stall([]) == 0.0


def test_percentile_is_an_observed_value() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 50) == 3.0 and percentile(values, 95) == 10.0 and percentile([], 50) is None


@pytest.mark.e2e
def test_stream_request_times_a_real_response(server: ServerProcess) -> None:
    text = "こんにちは。今日はとてもいい天気ですね。"
    sample = stream_request(f"{server.base_url}/v1/audio/speech", {"model": "demo", "input": text}, 44, 60)
    assert sample.ok and sample.riff and not sample.hung
    assert 0 < sample.ttfa_s <= sample.arrivals[-1][0] <= sample.total_s
    assert sample.arrivals[-1][1] == sample.audio_bytes and sample.audio_s > 1
    assert len(sample.arrivals) >= 2  # one segment after another, not one lump


def test_the_baseline_section_compares_each_figure() -> None:
    from bench.report import baseline_section

    def server(ttfa: float, failures: int) -> dict:
        single = {"ttfa_s": ttfa, "total_s": 2.0, "rtf": 1.0, "stall_s": 0.0}
        level = {
            "p50_ttfa_s": ttfa,
            "p95_ttfa_s": ttfa,
            "throughput_audio_s_per_s": 1.0,
            "failures": failures,
            "wrong": 0,
            "hung": 0,
        }
        figures = {
            "memory_mb_1_voice": 100.0,
            "memory_mb_3_voices": 300.0,
            "cold_start_s_1_voice": 9.0,
            "cold_start_s_3_voices": 20.0,
        }
        return {"single": {"short": single}, "concurrency": {"2": level}, **figures}

    lines = baseline_section({"revision": "main", "commit": "abc1234", **server(2.0, 0), "current": server(1.0, 1)})
    assert lines[1] == "## Against `main` (`abc1234`), measured in this run"
    assert "| short, 1 client: TTFA s | 1.00 | 2.00 | 0.50 |" in lines
    assert "| 2 clients: failures + wrong + hung | 1 | 0 | - |" in lines
    assert "| peak RSS MB, 3 voices | 300.00 | 300.00 | 1.00 |" in lines


def test_an_attack_meets_its_goal_only_if_every_request_is_served_fast_enough() -> None:
    from bench.reliability import Outcome, summarize

    served = [Outcome("served", 0.5), Outcome("served", 0.9), Outcome("served", 0.7)]
    figures = summarize(served, baseline_ttfa_s=0.5)
    assert (figures["served"], figures["refused"], figures["failed"]) == (3, 0, 0)
    assert (figures["ttfa_median_s"], figures["ttfa_max_s"], figures["ttfa_ratio"]) == (0.7, 0.9, 1.4)
    assert figures["goal_met"]

    assert not summarize(served, baseline_ttfa_s=0.3)["goal_met"]  # median 0.7 s is more than twice 0.3 s
    assert summarize(served, baseline_ttfa_s=0.35)["goal_met"]  # exactly twice still meets it

    refused = summarize([*served, Outcome("refused", detail="429 queue_full")], 0.5)
    assert refused["refused"] == 1 and refused["refusals"] == {"429 queue_full": 1} and not refused["goal_met"]
    failed = summarize([*served, Outcome("failed", 0.4, "incomplete audio (100 of 200 bytes)")], 0.5)
    assert failed["failed"] == 1 and failed["ttfa_median_s"] == 0.7 and not failed["goal_met"]  # its TTFA not counted

    nothing = summarize([Outcome("refused", detail="503 too_many_connections")], 0.5)
    assert nothing["served"] == 0 and nothing["ttfa_median_s"] is None and nothing["ttfa_ratio"] is None
    assert not nothing["goal_met"] and not summarize([], 0.5)["goal_met"]


def test_the_attack_table_and_the_exit_status_follow_each_goal() -> None:
    from bench.reliability import Outcome, attack_lines, broken, summarize

    def attack(name: str, outcomes: list[Outcome], quiet: dict) -> dict:
        attacker = {"counts": {"answered 200": 3}, "peak_sockets": 0}
        server = {"server_peak_rss_mb": 1.0, "server_peak_connections": 3}
        return {"attack": name, "what": "x", **summarize(outcomes, 0.5), **quiet, **server, "attacker": attacker,
                "attacker_stopped": True}  # fmt: skip

    attacks = [
        attack("slow readers", [Outcome("refused", detail="429 queue_full")], {"quiet_after_s": 1.0}),
        attack("huge header", [Outcome("served", 0.6), Outcome("served", 0.8)], {"quiet_after_s": 2.0}),
        attack("idle sockets", [Outcome("served", 0.6)], {"quiet_after_s": None, "not_quiet": "busy"}),
    ]
    run = {
        "when": "now",
        "machine": {},
        "settings": {"RATE_LIMIT_PER_MINUTE": "20"},
        "victim": "127.0.0.2",
        "attacker": "127.0.0.3",
        "attack_s": 30,
        "pace_s": 4.0,
        "baseline": {"requests": 5, "ttfa_median_s": 0.5, "ttfa_max_s": 0.6},
        "attacks": attacks,
    }
    lines = attack_lines(run)
    assert "| slow readers | 0 | 1 | 0 | - | - | no |" in lines
    assert "| huge header | 2 | 0 | 0 | 0.700 / 0.800 | 1.40 | yes |" in lines
    assert any('refused: {"429 queue_full": 1}' in line for line in lines)
    assert any("NOT quiet after the attack: busy" in line for line in lines)
    assert broken({"attack": run})
    run["attacks"] = attacks[1:2]
    assert not broken({"attack": run})


def test_server_connections_counts_the_server_side_of_established_connections() -> None:
    import socket

    from bench.reliability import server_connections

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert server_connections(port) == 0  # a listening socket is not a connection
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert server_connections(port) == 1  # the client's side has another local port
                client.close()
        assert server_connections(port) == 0


def test_an_attacker_is_told_which_limit_refused_it() -> None:
    from bench.attacks import answer_of

    limited = b'{"error": {"message": "too many requests from 127.0.0.3: at most 12 per minute; retry after 5 s"}}'
    assert answer_of(429, limited) == "answered 429 (too many requests from 127.0.0.3)"
    assert answer_of(429, b'{"error": {"message": "the server is busy; retry after 3 s"}}') == "answered 429 (the server is busy)"
    assert answer_of(200, b"RIFF") == "answered 200" and answer_of(502, b"<html>") == "answered 502"
