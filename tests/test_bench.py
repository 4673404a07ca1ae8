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
