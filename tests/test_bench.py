"""The benchmark's instruments: stall arithmetic, percentiles, and timing a real streamed request."""

from __future__ import annotations

from pathlib import Path

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
        single = {"ttfa_s": ttfa, "total_s": 2.0, "rtf": 1.0, "stall_s": 0.0, "max_gap_s": ttfa / 2}
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
    assert "| short, 1 client: max gap s | 0.50 | 1.00 | 0.50 |" in lines
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


def test_max_gap_is_the_longest_wait_between_chunks_after_the_first_audio() -> None:
    from bench.measure import Sample, max_gap

    second = BYTES_PER_SECOND
    # Plenty of audio is buffered at 3.5 s, so there is no stall, but the client saw no byte for 2.5 s.
    arrivals = [(1.0, 4 * second), (1.2, 8 * second), (3.7, 9 * second), (3.8, 10 * second)]
    assert abs(max_gap(arrivals) - 2.5) < 1e-9 and playback_stall(arrivals) == 0.0
    assert abs(Sample(ok=True, arrivals=arrivals).max_gap_s - 2.5) < 1e-9
    assert max_gap([(1.0, second)]) == 0.0 and max_gap([]) == 0.0  # one lump: no wait after the first byte


def sample(ttfa: float, total: float, gap: float, ok: bool = True) -> object:
    from bench.measure import Sample

    arrivals = [(ttfa, BYTES_PER_SECOND), (ttfa + gap, 2 * BYTES_PER_SECOND)]
    return Sample(ok=ok, ttfa_s=ttfa, total_s=total, audio_bytes=2 * BYTES_PER_SECOND, arrivals=arrivals)


def test_a_single_client_figure_is_the_median_of_its_repeats_with_their_range() -> None:
    from bench.run import summarize

    figures = summarize([sample(1.0, 3.0, 0.5), sample(3.0, 5.0, 2.0), sample(2.0, 4.0, 1.0), sample(0.1, 0.2, 0.0, ok=False)])
    assert (figures["n"], figures["failures"]) == (4, 1)  # the failed repeat counts, but not in the figures
    assert (figures["ttfa_s"], figures["total_s"], figures["max_gap_s"], figures["audio_s"]) == (2.0, 4.0, 1.0, 2.0)
    assert figures["spread"]["ttfa_s"] == [1.0, 3.0] and figures["spread"]["max_gap_s"] == [0.5, 2.0]
    assert figures["spread"]["total_s"] == [3.0, 5.0] and figures["spread"]["rtf"] == [1.5, 2.5]
    nothing = summarize([sample(0.1, 0.2, 0.0, ok=False)])
    assert nothing["ttfa_s"] is None and nothing["spread"]["ttfa_s"] is None


def test_rounds_interleave_the_contenders() -> None:
    from bench.run import interleaved

    assert interleaved(["ours", "genie_server", "genie_direct"], 2) == [
        (0, "ours"),
        (0, "genie_server"),
        (0, "genie_direct"),
        (1, "ours"),
        (1, "genie_server"),
        (1, "genie_direct"),
    ]
    assert interleaved(["ours"], 1) == [(0, "ours")]


def test_a_median_is_shown_with_the_range_of_its_repeats() -> None:
    from bench.report import with_spread

    assert with_spread(1.2, [1.1, 1.35]) == "1.20 (1.10–1.35)"
    assert with_spread(1.2, [1.2, 1.2]) == "1.20" and with_spread(1.2, None) == "1.20" and with_spread(None, None) == "-"
    assert with_spread(0.0001, [0.0001, 0.0002]) == "0.00"  # a range that would read "0.00–0.00" says nothing


def run_results(**changes: object) -> dict:
    """A run's results as bench/run.py writes them, every target met by a little; `changes` set figures by path."""
    single = {"n": 3, "failures": 0, "ttfa_s": 0.5, "total_s": 3.0, "audio_s": 5.0, "rtf": 0.6, "stall_s": 0.0, "max_gap_s": 0.9}
    level = {"clients": 4, "requests": 12, "failures": 0, "wrong": 0, "hung": 0, "p50_ttfa_s": 1.0, "p95_ttfa_s": 1.5,
             "throughput_audio_s_per_s": None}  # fmt: skip
    results = {
        "run": {"mode": "full", "started_utc": "now", "repeats": 3, "rounds": ["ours", "genie_server"], "many_voices": 8},
        "machine": {
            "cpu": "x",
            "cores": 2,
            "memory_gb": 24,
            "python": "3.11",
            "genie_tts": "2",
            "onnxruntime": "1",
            "uvicorn": "0",
            "ours_revision": "abc",
        },  # fmt: skip
        "sentence_1_client": {"ours_ttfa_s": 0.7, "genie_server_ttfa_s": 5.0},  # 0.14 x, under 0.8 s
        "short_1_client": {"ours_ttfa_s": 0.4, "genie_server_ttfa_s": 1.0},
        "paragraph_1_client": {
            "ttfa_ratio": 0.2,
            "ours_stall_s": 0.0,
            "total_ratio_per_audio_s": 0.7,
            "ours_ttfa_s": 0.5,
            "genie_server_ttfa_s": 5.0,
            "ours_total_s": 20.0,
            "genie_direct_total_s": 28.0,
            "total_ratio": 0.7,
            "ours_audio_s": 29.0,
            "genie_direct_audio_s": 29.0,
        },  # fmt: skip
        "single": {
            "ours": {text: dict(single) for text in ("short", "sentence", "paragraph")},
            "genie_server": {"short": dict(single)},
            "genie_direct": {"short": {"total_s": 1.0, "audio_s": 1.0}},
        },
        "concurrency": {"1": {**level, "clients": 1, "p50_ttfa_s": 0.6, "max_gap_s": 0.5}, "4": {**level, "max_gap_s": 2.4}},
        "genie_server_concurrency": {},
        "memory_mb": {
            "ours_1_voice": 1400.0,
            "ours_3_voices": 3000.0,
            "ours_8_voices": 6000.0,
            "genie_server_1_voice": 4000.0,
            "genie_server_3_voices": 9000.0,
        },  # fmt: skip
        "cold_start_s": {
            "ours_1_voice": 9.0,
            "ours_1_voice_cached": 4.0,
            "ours_3_voices": 20.0,
            "ours_8_voices": 50.0,
            "genie_server_1_voice": 9.0,
            "genie_server_3_voices": 23.0,
        },  # fmt: skip
        "int8": {
            "total_ratio_per_audio_s": 0.55,
            "top1_agreement": 0.99,
            "sequence_agreement": 0.9,
            "step_ms_fp32": 20.0,
            "step_ms_int8": 12.0,
            "ours_total_s": 15.0,
            "ours_audio_s": 29.0,
        },  # fmt: skip
        "not_measured": {},
        "timeline": {"ours": [], "genie_server": []},
        "baseline": None,
    }
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = results
        for parent in parents:
            target = target[parent]
        target[key] = value
    return results


FP32_RATIO = "paragraph: our time per audio second (fp32) <= 0.75 x Genie direct's"
INT8_RATIO = "paragraph: our time per audio second with T2S_PRECISION=int8 <= 0.6 x Genie direct's"
CACHED_START = "cold start, 1 voice, second start on a filled CACHE_DIR: ours <= 0.5 x Genie server's"


def verdicts(results: dict) -> dict[str, tuple[object, bool]]:
    from bench.targets import targets

    return {row["target"]: (row["measured"], row["met"]) for row in targets(results)}


def test_every_target_of_the_issue_has_a_row() -> None:
    rows = verdicts(run_results())
    assert all(met for _, met in rows.values()), rows
    assert rows["sentence, 1 client: our TTFA <= 0.15 x Genie server's"][0] == pytest.approx(0.14)
    assert rows["sentence, 1 client: our TTFA <= 0.8 s"] == (0.7, True)
    assert rows["short, 1 client: our TTFA <= 0.5 x Genie server's"] == (0.4, True)
    for text in ("short", "sentence", "paragraph"):
        assert rows[f"{text}, 1 client: our longest gap between audio bytes <= 1.0 s"] == (0.9, True)
    assert rows["4 clients: our longest gap between audio bytes <= 2.5 s"] == (2.4, True)
    assert rows["paragraph, 1 client: no playback stall (s)"] == (0.0, True)
    assert rows[FP32_RATIO] == (0.7, True)
    assert rows[INT8_RATIO] == (0.55, True)
    assert rows["4 clients: failures + wrong + hung = 0"] == (0, True)
    assert rows["4 clients: p95 TTFA <= 3 x single-client TTFA"] == (2.5, True)
    assert rows["peak RSS, 1 voice: ours <= 1500 MB"] == (1400.0, True)
    assert rows["peak RSS, 1 voice: ours <= 0.4 x Genie server's"] == (0.35, True)
    assert rows["peak RSS, 8 voices: ours <= 6500 MB"] == (6000.0, True)
    assert rows[CACHED_START][0] == pytest.approx(4 / 9)


@pytest.mark.parametrize(
    ("change", "target"),
    [
        (
            {"sentence_1_client__ours_ttfa_s": 0.85, "sentence_1_client__genie_server_ttfa_s": 10.0},
            "sentence, 1 client: our TTFA <= 0.8 s",
        ),
        ({"sentence_1_client__genie_server_ttfa_s": 4.0}, "sentence, 1 client: our TTFA <= 0.15 x Genie server's"),
        ({"short_1_client__ours_ttfa_s": 0.51}, "short, 1 client: our TTFA <= 0.5 x Genie server's"),
        ({"concurrency__4__max_gap_s": 2.6}, "4 clients: our longest gap between audio bytes <= 2.5 s"),
        ({"paragraph_1_client__ours_stall_s": 0.01}, "paragraph, 1 client: no playback stall (s)"),
        (
            {"paragraph_1_client__total_ratio_per_audio_s": 0.76},
            FP32_RATIO,
        ),
        (
            {"int8__total_ratio_per_audio_s": 0.61},
            INT8_RATIO,
        ),
        ({"concurrency__4__hung": 1}, "4 clients: failures + wrong + hung = 0"),
        ({"concurrency__4__p95_ttfa_s": 1.9}, "4 clients: p95 TTFA <= 3 x single-client TTFA"),
        ({"memory_mb__ours_1_voice": 1501.0}, "peak RSS, 1 voice: ours <= 1500 MB"),
        ({"memory_mb__genie_server_1_voice": 3000.0}, "peak RSS, 1 voice: ours <= 0.4 x Genie server's"),
        ({"memory_mb__ours_8_voices": 6600.0}, "peak RSS, 8 voices: ours <= 6500 MB"),
        (
            {"cold_start_s__ours_1_voice_cached": 4.6},
            CACHED_START,
        ),
    ],
)
def test_a_target_is_missed_by_a_figure_past_its_limit(change: dict, target: str) -> None:
    rows = verdicts(run_results(**change))
    assert rows[target][1] is False
    assert sum(not met for _, met in rows.values()) == 1  # only that one


def test_a_gap_of_one_text_misses_only_its_row() -> None:
    results = run_results()
    results["single"]["ours"]["sentence"]["max_gap_s"] = 1.2
    rows = verdicts(results)
    assert rows["sentence, 1 client: our longest gap between audio bytes <= 1.0 s"] == (1.2, False)
    assert rows["paragraph, 1 client: our longest gap between audio bytes <= 1.0 s"] == (0.9, True)


def test_a_figure_not_measured_misses_its_target_and_says_why() -> None:
    from bench.report import markdown
    from bench.targets import targets

    results = run_results(int8=None, memory_mb__ours_8_voices=None)
    results["not_measured"] = {"int8": "run with --without-int8", "ours_8_voices": "not started: 30000 MB needed"}
    rows = {row["target"]: row for row in targets(results)}
    int8 = rows[INT8_RATIO]
    assert (int8["measured"], int8["met"], int8["note"]) == (None, False, "run with --without-int8")
    assert rows["peak RSS, 8 voices: ours <= 6500 MB"]["met"] is False
    results["targets"] = list(rows.values())
    page = markdown(results)
    assert "| peak RSS, 8 voices: ours <= 6500 MB | - (not started: 30000 MB needed) | 6500 | **MISS** |" in page
    assert "## int8 T2S: not measured (run with --without-int8)" in page


def test_latest_md_shows_each_target_and_each_spread() -> None:
    from bench.report import markdown
    from bench.targets import targets

    results = run_results(memory_mb__ours_1_voice=1600.0)
    results["single"]["ours"]["short"]["spread"] = {"ttfa_s": [0.4, 0.7], "max_gap_s": [0.8, 1.1]}
    results["concurrency"]["4"]["spread"] = {"max_gap_s": [2.0, 2.9]}
    results["cold_start_spread_s"] = {"ours_1_voice_cached": [3.5, 4.5]}
    results["targets"] = targets(results)
    page = markdown(results)
    assert "| sentence, 1 client: our TTFA <= 0.8 s | 0.70 | 0.80 | MET |" in page
    assert "| peak RSS, 1 voice: ours <= 1500 MB | 1600.00 | 1500 | **MISS** |" in page
    assert "| ours | short | 0.50 (0.40–0.70) | 3.00 | 5.00 | 0.60 | 0.00 | 0.90 (0.80–1.10) |" in page
    assert "| 12 | 0 | 0 | 0 | 1.00 | 1.50 | - | 2.40 (2.00–2.90) |" in page
    assert "| ours 1 voice cached | - | 4.0 (3.5–4.5) |" in page
    assert "top-1 agreement per step 0.990, token-sequence agreement 0.900" in page


def test_the_vocoder_comparison_replaces_the_noise_with_zeros(tmp_path) -> None:
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    from bench.vocoder_runtime import without_noise

    nodes = [helper.make_node("RandomNormalLike", ["x"], ["noise"], name="noise"), helper.make_node("Add", ["x", "noise"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "noisy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    source = tmp_path / "noisy.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(source))
    x = np.arange(12, dtype=np.float32).reshape(4, 3)

    def run(path) -> np.ndarray:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    assert not np.array_equal(run(source), x)  # the original adds noise
    quiet = without_noise(source, tmp_path / "quiet.onnx")
    assert np.array_equal(run(quiet), x) and np.array_equal(run(quiet), run(quiet))
    with pytest.raises(RuntimeError, match="expected one RandomNormalLike"):
        without_noise(quiet, tmp_path / "again.onnx")


def test_a_concurrency_level_reports_the_worst_gap_of_its_clients() -> None:
    from bench.run import worst_gap

    clients = [sample(1.0, 3.0, 0.5), sample(1.5, 4.0, 2.2), sample(2.0, 4.0, 1.0), sample(0.1, 9.0, 5.0, ok=False)]
    assert worst_gap(clients) == pytest.approx(2.2)  # a failed request's gap is counted as a failure instead
    assert worst_gap([sample(0.1, 9.0, 5.0, ok=False)]) is None and worst_gap([]) is None


def test_the_many_voices_server_is_only_started_when_its_memory_fits() -> None:
    from bench.run import predicted_mb

    assert predicted_mb(3800.0, 9100.0, 8) == pytest.approx(3800 + 7 * 2650)  # today's figures: about 22 GB
    assert predicted_mb(1000.0, 900.0, 8) == 1000.0  # shared weights could make more voices cost nothing extra


def language_section() -> dict:
    """The "languages" section as bench/languages.py measures it: Chinese against Genie, Korean ours alone."""
    from bench.languages import ratios

    def server(ttfa: float, total: float, failures: int = 0) -> dict:
        row = {"n": 3, "failures": failures, "ttfa_s": ttfa, "total_s": total, "audio_s": 5.0, "rtf": total / 5}
        return {**row, "stall_s": 0.0, "max_gap_s": 0.4, "spread": {"ttfa_s": [ttfa - 0.1, ttfa + 0.1]}}

    chinese = {
        "ours": {"sentence": server(0.5, 4.0)},
        "genie_server": {"sentence": server(4.0, 4.0)},
        "genie_direct": {"sentence": {"total_s": 4.0, "audio_s": 4.0, "spread": {"total_s": [3.9, 4.2]}}},
    }
    korean = {"ours": {"sentence": server(0.6, 5.0, failures=1)}}
    return {
        "repeats": 3,
        "rounds": ["zh ours", "zh genie_server", "zh genie_direct", "ko ours"],
        "texts": {},
        "zh": {"voice": "demo-zh", "genie_language": "Chinese", "single": chinese, "ratios": ratios(chinese)},
        "ko": {"voice": "demo-ko", "genie_language": None, "single": korean, "ratios": ratios(korean)},
    }


def test_each_language_is_compared_with_genie_where_genie_speaks_it() -> None:
    section = language_section()
    # 0.5 s against 4 s to first audio; 0.8 s per audio second against Genie direct's 1.0
    assert section["zh"]["ratios"]["sentence"] == pytest.approx(
        {"ttfa_ours_over_genie_server": 0.125, "per_audio_s_ours_over_genie_direct": 0.8}
    )
    assert section["ko"]["ratios"]["sentence"] == {
        "ttfa_ours_over_genie_server": None,
        "per_audio_s_ours_over_genie_direct": None,
    }


def test_the_languages_table_shows_every_contender_its_failures_and_the_ratios() -> None:
    from bench.report import languages_lines

    lines = languages_lines(language_section())
    assert "## Languages" in lines and "`demo-zh`, `demo-ko`" in "\n".join(lines)
    assert "| zh | ours | sentence | 0.50 (0.40–0.60) | 4.00 | 5.00 | 0.80 | 0.00 | 0.40 | 0 of 3 |" in lines
    assert "| zh | genie_server | sentence | 4.00 (3.90–4.10) | 4.00 | 5.00 | 0.80 | 0.00 | 0.40 | 0 of 3 |" in lines
    assert "| zh | genie_direct | sentence | - | 4.00 (3.90–4.20) | 4.00 | 1.00 | - | - | - |" in lines
    assert "| ko | ours | sentence | 0.60 (0.50–0.70) | 5.00 | 5.00 | 1.00 | 0.00 | 0.40 | 1 of 3 |" in lines
    assert not any(line.startswith("| ko | genie") for line in lines)
    assert "| zh | sentence | 0.12 | 0.80 |" in lines and "| ko | sentence | - | - |" in lines


def test_latest_md_has_the_languages_section_or_says_why_not() -> None:
    from bench.report import languages_markdown, markdown
    from bench.targets import targets

    results = run_results(languages=language_section())
    results["targets"] = targets(results)
    assert "| ko | ours | sentence |" in markdown(results)
    assert targets(results) == targets(run_results())  # the languages add no target
    results = run_results()
    results["not_measured"] = {"languages": "run with --without-languages"}
    results["targets"] = targets(results)
    assert "## Languages: not measured (run with --without-languages)" in markdown(results)
    page = languages_markdown({"run": run_results()["run"], "machine": run_results()["machine"], "languages": language_section()})
    assert page.startswith("# Benchmark results: languages") and "| zh | sentence | 0.12 | 0.80 |" in page


def test_only_our_own_failures_fail_the_languages_step() -> None:
    from bench.languages import our_failures

    section = language_section()
    section["zh"]["single"]["genie_server"]["sentence"]["failures"] = 2  # Genie failing is a finding, not our fault
    assert our_failures(section) == ["ko sentence: 1 of 3 requests failed"]
    assert our_failures({}) == []


def test_korean_is_ours_alone_and_genie_is_told_each_language(tmp_path) -> None:
    from bench.languages import Voices, contenders
    from bench.run import QUICK
    from bench.texts import LANGUAGE_TEXTS

    folders = {voice: tmp_path / voice for voice in ("demo-zh", "demo-en", "demo-ko")}
    plan = contenders(Voices(folders, tmp_path / "GenieData"), QUICK, tmp_path)
    assert {code: list(group) for code, group in plan.items()} == {
        "zh": ["ours", "genie_server", "genie_direct"],
        "en": ["ours", "genie_server", "genie_direct"],
        "ko": ["ours"],
    }
    for code, language in (("zh", "Chinese"), ("en", "English")):
        server, direct = plan[code]["genie_server"], plan[code]["genie_direct"]
        assert (server.contender.language, server.contender.voice, direct.language) == (language, f"demo-{code}", language)
        assert server.contender.voice_dir == direct.voice_dir == folders[f"demo-{code}"]
        assert server.texts == direct.texts == LANGUAGE_TEXTS[code]
    ours = plan["ko"]["ours"]
    assert (ours.contender.voice, ours.contender.voice_dir, ours.texts) == ("demo-ko", folders["demo-ko"], LANGUAGE_TEXTS["ko"])
    assert len({group["ours"].contender.name for group in plan.values()}) == 3  # separate logs and CACHE_DIRs


@pytest.mark.e2e
def test_a_language_our_server_cannot_speak_stops_the_languages_step_at_its_start(demo_root, tmp_path) -> None:
    import json
    import shutil

    from bench.languages import LANGUAGES, Voices, require_speech

    folders = {language.voice: demo_root / language.voice for language in LANGUAGES}
    mute = tmp_path / "mute"  # demo-ko's files with a transcript in a language no G2P of ours knows
    (mute / "reference").mkdir(parents=True)
    (mute / "tts_models").symlink_to(demo_root / "demo-ko" / "tts_models", target_is_directory=True)
    shutil.copyfile(demo_root / "demo-ko" / "reference" / "audio.wav", mute / "reference" / "audio.wav")
    (mute / "reference" / "config.json").write_text(json.dumps({"text": "nuqneH", "language": "tlh"}))
    folders["demo-ko"] = mute
    with pytest.raises(RuntimeError, match="cannot speak every language") as raised:
        require_speech(Voices(folders, demo_root / "GenieData"), tmp_path / "scratch", 90)
    problems = [line.strip() for line in str(raised.value).splitlines()[1:] if not line.strip().startswith("log:")]
    assert len(problems) == 1 and problems[0].startswith("demo-ko: HTTP 404:")  # Chinese and English were spoken
    assert "model_not_found" in problems[0] and "unknown \"language\" 'tlh'" in str(raised.value)  # its log line says why


def test_a_models_folder_links_each_voice_to_the_folder_asked_for_this_time(tmp_path: Path) -> None:
    """The languages step's check used to leave models-demo-1/demo linked to the Chinese voice, and the main run then
    measured the Japanese texts on it: a link to another folder is replaced."""
    from bench.contenders import voice_folders

    chinese, japanese = tmp_path / "demo-zh", tmp_path / "demo"
    chinese.mkdir()
    japanese.mkdir()
    scratch = tmp_path / "scratch"
    voice_folders(chinese, 1, scratch)
    models = voice_folders(japanese, 2, scratch)
    assert voice_folders(japanese, 1, scratch) == scratch / "models-demo-1"
    assert (scratch / "models-demo-1" / "demo").resolve() == japanese.resolve()
    assert [path.resolve() for path in sorted(models.iterdir())] == [japanese.resolve()] * 2
