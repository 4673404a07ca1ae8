"""The soak's long-text phase (bench/memory.py): its text, its report and, end to end, a tiny run of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import memory
from bench.reliability import markdown


def row(request: int, before: int, peak: int, after: int) -> dict:
    return {
        "request": request,
        "status": 200,
        "outcome": "complete",
        "seconds": 10.0,
        "audio_s": 30.0,
        "idle_before_mb": before,
        "peak_mb": peak,
        "idle_after_mb": after,
        "rise_mb": peak - before,
    }


def a_run(current: list[dict], baseline: list[dict]) -> dict:
    digits = {"status": 400, "outcome": "refused", "seconds": 0.05}
    return {
        "when": "2026-12-07 03:00 UTC",
        "machine": {"cpu": "AMD EPYC", "cpu_flags": "avx512_vnni avx512_bf16", "cores": 2},
        "current": {"revision": "abc1234", "chars": 4090, "requests": current, "digits": digits},
        "baseline": {"name": "facf13a", "revision": "facf13a", "chars": 4090, "requests": baseline, "digits": digits},
    }


def test_the_prose_is_as_long_as_asked_and_the_same_every_time() -> None:
    text = memory.english_prose(4096)
    assert 4000 < len(text) <= 4096 and text == memory.english_prose(4096)
    assert text.isascii() and text.endswith(".")


def test_the_report_shows_both_revisions_per_request_and_the_goal() -> None:
    flat = [row(1, 1000, 1200, 1010), row(2, 1010, 1210, 1012), row(3, 1012, 1215, 1015)]
    growing = [row(1, 1100, 2240, 2240), row(2, 2240, 2930, 2910), row(3, 2910, 3590, 3410)]
    lines = "\n".join(memory.long_lines(a_run(flat, growing)))
    assert "| now (`abc1234`) | 1 | complete (200) | 1,000 | 1,200 (+200) | 1,010 | 30.0 | 10 |" in lines
    assert "| baseline (`facf13a`) | 3 | complete (200) | 2,910 | 3,590 (+680) | 3,410 | 30.0 | 10 |" in lines
    assert "AMD EPYC (avx512_vnni avx512_bf16, 2 cores)" in lines
    assert "- now: idle RSS after the last request +0% against after the first" in lines
    assert "- baseline: idle RSS after the last request +52% against after the first" in lines
    assert "refused (status 400) after 0.05 s" in lines
    assert "met by `abc1234`" in lines
    assert memory.long_goal_met(a_run(flat, growing)) and not memory.long_goal_met(a_run(growing, flat))


def test_a_request_that_did_not_complete_is_shown_as_such_and_misses_the_goal() -> None:
    broken = {**row(1, 1000, 1100, 1000), "outcome": "broken: RemoteProtocolError"}
    del broken["audio_s"]
    run = a_run([broken], [row(1, 1000, 1200, 1010)])
    assert "| now (`abc1234`) | 1 | broken: RemoteProtocolError (200) | 1,000 | 1,100 (+100) | 1,000 | - |" in "\n".join(
        memory.long_lines(run)
    )
    assert not memory.long_goal_met(run)


def test_the_reliability_report_keeps_its_other_sections_beside_the_long_texts() -> None:
    run = a_run([row(1, 1000, 1200, 1010)], [row(1, 1100, 2240, 2240)])
    report = markdown({"long": run, "fuzz": {}})
    assert "## Long texts: memory per request" in report and "## Fuzzing" in report


@pytest.mark.e2e
def test_a_tiny_long_text_run_against_a_baseline(demo_root: Path, tmp_path: Path) -> None:
    """One short request per revision (this checkout and its HEAD as the baseline), through real servers."""
    run = memory.long_run(tmp_path, count=1, chars=120, baseline="HEAD")
    for phase in (run["current"], run["baseline"]):
        (request,) = phase["requests"]
        assert request["outcome"] == "complete" and request["audio_s"] > 1, request
        assert request["peak_mb"] >= request["idle_before_mb"] > 100
        assert phase["digits"]["status"] is not None or phase["digits"]["outcome"] == "timeout"
    assert "| baseline (`" in "\n".join(memory.long_lines({"when": "now", "machine": {"cpu": "x", "cores": 2}, **run}))
