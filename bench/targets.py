"""The targets a run is judged by (issue 13), each a row: what, the measured figure, its limit, MET or not.

A figure that was not measured (None) never meets its target. Ratios compare contenders of the same run.
"""

from __future__ import annotations


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def row(target: str, measured: float | None, limit: float, note: str = "") -> dict[str, object]:
    met = measured is not None and measured <= limit
    return {"target": target, "measured": measured, "limit": limit, "met": met, **({"note": note} if note else {})}


def targets(results: dict) -> list[dict[str, object]]:
    """Every target row, from the figures of one run's results (latest.json's keys)."""
    sentence, short, paragraph = results["sentence_1_client"], results["short_1_client"], results["paragraph_1_client"]
    ours = results["single"]["ours"]
    levels = results["concurrency"]
    four, single_level = levels.get("4", {}), levels.get("1", {})
    memory, starts = results["memory_mb"], results["cold_start_s"]
    int8 = results.get("int8") or {}
    missing = results.get("not_measured", {})
    count = results["run"]["many_voices"]
    many = f"ours_{count}_voices"
    bad = ("failures", "wrong", "hung")
    rows = [
        row(
            "sentence, 1 client: our TTFA <= 0.15 x Genie server's",
            ratio(sentence["ours_ttfa_s"], sentence["genie_server_ttfa_s"]),
            0.15,
        ),
        row("sentence, 1 client: our TTFA <= 0.8 s", sentence["ours_ttfa_s"], 0.8),
        row("short, 1 client: our TTFA <= 0.5 x Genie server's", ratio(short["ours_ttfa_s"], short["genie_server_ttfa_s"]), 0.5),
        *(row(f"{text}, 1 client: our longest gap between audio bytes <= 1.0 s", ours[text]["max_gap_s"], 1.0) for text in ours),
        row("4 clients: our longest gap between audio bytes <= 2.5 s", four.get("max_gap_s"), 2.5),
        row("paragraph, 1 client: our TTFA <= 0.35 x Genie server's", paragraph["ttfa_ratio"], 0.35),
        row("paragraph, 1 client: no playback stall (s)", paragraph["ours_stall_s"], 0.0),
        row("paragraph: our time per audio second (fp32) <= 0.75 x Genie direct's", paragraph["total_ratio_per_audio_s"], 0.75),
        row(
            "paragraph: our time per audio second with T2S_PRECISION=int8 <= 0.6 x Genie direct's",
            int8.get("total_ratio_per_audio_s"),
            0.6,
            missing.get("int8", ""),
        ),
        row("4 clients: failures + wrong + hung = 0", sum(four[key] for key in bad) if four else None, 0),
        row(
            "4 clients: p95 TTFA <= 3 x single-client TTFA",
            ratio(four.get("p95_ttfa_s"), single_level.get("p50_ttfa_s")),
            3.0,
        ),
        row("peak RSS, 1 voice: ours <= 1500 MB", memory["ours_1_voice"], 1500),
        row(
            "peak RSS, 1 voice: ours <= 0.4 x Genie server's",
            ratio(memory["ours_1_voice"], memory["genie_server_1_voice"]),
            0.4,
        ),
        row(f"peak RSS, {count} voices: ours <= 6500 MB", memory.get(many), 6500, missing.get(many, "")),
        row(
            "cold start, 1 voice, second start on a filled CACHE_DIR: ours <= 0.5 x Genie server's",
            ratio(starts.get("ours_1_voice_cached"), starts["genie_server_1_voice"]),
            0.5,
        ),
    ]
    return rows
