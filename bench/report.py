"""Writing one run's results: latest.json, latest.md and two plots. Only ever from a single run's dict."""

from __future__ import annotations

import json
from pathlib import Path

SINGLE_FIGURES = ("ttfa_s", "total_s", "audio_s", "rtf", "stall_s", "max_gap_s")


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def with_spread(value: object, spread: list[float] | None, digits: int = 2) -> str:
    """A median with the range of its repeats beside it, when they differ: "1.20 (1.10-1.35)"."""
    low, high = (fmt(bound, digits) for bound in spread) if value is not None and spread else ("", "")
    if low == high:  # one repeat, or repeats that differ below the digits shown
        return fmt(value, digits)
    return f"{fmt(value, digits)} ({low}–{high})"


def target_lines(targets: list[dict]) -> list[str]:
    lines = ["| target | measured | limit | |", "|---|---|---|---|"]
    for target in targets:
        verdict = "MET" if target["met"] else "**MISS**"
        note = f" ({target['note']})" if target.get("note") else ""
        lines.append(f"| {target['target']} | {fmt(target['measured'])}{note} | {fmt(target['limit'])} | {verdict} |")
    return lines


def markdown(results: dict) -> str:
    run, machine, paragraph = results["run"], results["machine"], results["paragraph_1_client"]
    lines = [
        "# Benchmark results",
        "",
        f"One run, `{run['mode']}` mode, started {run['started_utc']}: {run['repeats']} repeat(s) per point, medians with",
        "the min–max of the repeats in brackets where they differ. Single-client figures come from interleaved rounds",
        f"(repeat 1 of {', '.join(run['rounds'])}, then repeat 2 of each, ...), each contender freshly started per round.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; Python {machine['python']},",
        f"genie-tts {machine['genie_tts']}, onnxruntime {machine['onnxruntime']}, uvicorn {machine['uvicorn']}, "
        f"ours at `{machine['ours_revision']}`.",
        "Voice: the generated demo voice with its length rule (2 semantic tokens per phoneme), so every system does",
        "the same, realistic amount of model work. TTFA is the first *audio* byte (after our 44-byte WAV header).",
        "",
        "## Targets",
        "",
        *target_lines(results["targets"]),
        "",
        "## One client",
        "",
        "Max gap: the longest wait between two body chunks after the first audio byte, by the client's clock.",
        "",
        "| contender | text | TTFA s | total s | audio s | RTF | stall s | max gap s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for contender, text, cells in single_rows(results["single"]):
        lines.append(f"| {contender} | {text} | {' | '.join(cells)} |")
    lines += [
        "",
        f"Paragraph: our TTFA {fmt(paragraph['ours_ttfa_s'])} s vs Genie server {fmt(paragraph['genie_server_ttfa_s'])} s "
        f"(ratio {fmt(paragraph['ttfa_ratio'])}); our total {fmt(paragraph['ours_total_s'])} s vs Genie direct "
        f"{fmt(paragraph['genie_direct_total_s'])} s (ratio {fmt(paragraph['total_ratio'])}; per second of audio "
        f"{fmt(paragraph['total_ratio_per_audio_s'])}, since we produced {fmt(paragraph['ours_audio_s'])} s of audio and it "
        f"{fmt(paragraph['genie_direct_audio_s'])} s).",
        "",
        "## Concurrency",
        "",
        "| contender | clients | requests | failures | wrong | hung | p50 TTFA s | p95 TTFA s | audio s per s | max gap s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for contender, key in (("ours", "concurrency"), ("genie_server", "genie_server_concurrency")):
        for clients, row in results[key].items():
            gap = with_spread(row.get("max_gap_s"), row.get("spread", {}).get("max_gap_s"))
            lines.append(
                f"| {contender} | {clients} | {row['requests']} | {row['failures']} | {row['wrong']} | {row['hung']} | "
                f"{fmt(row['p50_ttfa_s'])} | {fmt(row['p95_ttfa_s'])} | {fmt(row['throughput_audio_s_per_s'])} | {gap} |"
            )
    lines += [
        "",
        "A response counts as wrong when it has no RIFF header or its length differs by more than 1% from the",
        "same text served alone. Genie's server sends raw PCM labelled audio/wav, so all its responses lack RIFF.",
        "TTFA percentiles pool every request of a level; its max gap is the worst over the clients of one repeat",
        "(median over repeats).",
        "",
        "## Memory and cold start",
        "",
        "Peak RSS is the highest over every process of that kind in the run; each first start has an empty CACHE_DIR.",
        '"cached" is a second start on the CACHE_DIR a first start filled.',
        "",
        "| | peak RSS MB | cold start s |",
        "|---|---|---|",
    ]
    spreads = results.get("cold_start_spread_s", {})
    for key in dict.fromkeys([*results["memory_mb"], *results["cold_start_s"]]):
        start = with_spread(results["cold_start_s"].get(key), spreads.get(key), 1)
        note = results.get("not_measured", {}).get(key)
        rss = fmt(results["memory_mb"].get(key), 0) if not note else f"- ({note})"
        lines.append(f"| {key.replace('_', ' ')} | {rss} | {start} |")
    lines += int8_lines(results)
    lines += languages_lines(results.get("languages"), results.get("not_measured", {}).get("languages"))
    if results.get("baseline"):
        lines += baseline_section(results["baseline"])
    lines += ["", "![TTFA vs concurrency](ttfa_vs_concurrency.png)", "", "![Paragraph timeline](paragraph_timeline.png)", ""]
    return "\n".join(lines)


def single_rows(single: dict) -> list[tuple[str, str, list[str]]]:
    """(contender, text, cells of SINGLE_FIGURES) for each one-client row; Genie direct's last (no TTFA, stall or gap)."""
    rows = []
    for contender, texts in single.items():
        if contender == "genie_direct":
            continue
        for text, row in texts.items():
            rows.append((contender, text, [with_spread(row[key], row.get("spread", {}).get(key)) for key in SINGLE_FIGURES]))
    for text, row in single.get("genie_direct", {}).items():
        total = with_spread(row["total_s"], row.get("spread", {}).get("total_s"))
        per_audio = row["total_s"] / row["audio_s"] if row["total_s"] is not None and row["audio_s"] else None
        rows.append(("genie_direct", text, ["-", total, fmt(row["audio_s"]), fmt(per_audio), "-", "-"]))
    return rows


def languages_lines(languages: dict | None, not_measured: str | None = None) -> list[str]:
    """The "Languages" section: each language's one-client table, then our ratios against Genie per language and text."""
    if not languages:
        return ["", f"## Languages: not measured ({not_measured or 'no figures'})"]
    codes = [code for code in languages if isinstance(languages[code], dict) and "single" in languages[code]]
    voices = ", ".join(f"`{languages[code]['voice']}`" for code in codes)
    lines = [
        "",
        "## Languages",
        "",
        f"Each language's demo voice ({voices}: the same random weights, each with the length rule of its own",
        "reference transcript) on the texts of bench/texts.py's LANGUAGE_TEXTS, spoken by our server, Genie's server and",
        "Genie direct, each loaded with that voice folder and its language; Genie has no Korean, so Korean is ours alone.",
        "Chinese runs without the optional RoBERTa features (the stand-in GenieData has none) for every contender.",
        f"One client, {languages['repeats']} interleaved round(s) over every contender of every language; RTF is the time",
        "per second of audio; failed: requests that got no complete audio (not in the figures).",
        "",
        "| language | contender | text | TTFA s | total s | audio s | RTF | stall s | max gap s | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for code in codes:
        single = languages[code]["single"]
        for contender, text, cells in single_rows(single):
            row = single[contender][text]
            failed = f"{row['failures']} of {row['n']}" if "n" in row else "-"
            lines.append(f"| {code} | {contender} | {text} | {' | '.join(cells)} | {failed} |")
    lines += [
        "",
        "| language | text | our TTFA / Genie server's | our time per audio s / Genie direct's |",
        "|---|---|---|---|",
    ]
    for code in codes:
        for text, row in languages[code]["ratios"].items():
            ttfa, per_audio = row["ttfa_ours_over_genie_server"], row["per_audio_s_ours_over_genie_direct"]
            lines.append(f"| {code} | {text} | {fmt(ttfa)} | {fmt(per_audio)} |")
    return lines


def languages_markdown(results: dict) -> str:
    """The page of `python -m bench.languages`, the languages step run alone."""
    run, machine = results["run"], results["machine"]
    lines = [
        "# Benchmark results: languages (the step run alone)",
        "",
        f"`{run['mode']}` mode, started {run['started_utc']}. Machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gb']} GB; genie-tts {machine['genie_tts']}, onnxruntime {machine['onnxruntime']}, "
        f"ours at `{machine['ours_revision']}`.",
        "For development only: the committed figures are the Languages section of [latest.md](latest.md), from a full run.",
        *languages_lines(results["languages"]),
        "",
    ]
    return "\n".join(lines)


def int8_lines(results: dict) -> list[str]:
    int8 = results.get("int8")
    if not int8:
        return ["", f"## int8 T2S: not measured ({results.get('not_measured', {}).get('int8', 'no figures')})"]
    return [
        "",
        "## int8 T2S (T2S_PRECISION=int8)",
        "",
        f"Paragraph: {fmt(int8['ours_total_s'])} s for {fmt(int8['ours_audio_s'])} s of audio, "
        f"{fmt(int8['total_ratio_per_audio_s'])} x Genie direct's time per audio second. Against fp32 with deterministic",
        f"sampling over the bench texts: top-1 agreement per step {fmt(int8['top1_agreement'], 3)}, token-sequence agreement "
        f"{fmt(int8['sequence_agreement'], 3)}; decoding step {fmt(int8['step_ms_fp32'], 1)} ms fp32, "
        f"{fmt(int8['step_ms_int8'], 1)} ms int8.",
    ]


def baseline_section(baseline: dict) -> list[str]:
    """Our server now against our server at the baseline revision, measured in the same run."""
    now, then = baseline["current"], baseline
    rows = []
    for text, row in now["single"].items():
        for key, label in (
            ("ttfa_s", "TTFA s"),
            ("total_s", "total s"),
            ("rtf", "RTF"),
            ("stall_s", "stall s"),
            ("max_gap_s", "max gap s"),
        ):
            rows.append((f"{text}, 1 client: {label}", row.get(key), then["single"][text].get(key)))
    for clients, row in now["concurrency"].items():
        previous = then["concurrency"][clients]
        figures = (("p50_ttfa_s", "p50 TTFA s"), ("p95_ttfa_s", "p95 TTFA s"), ("throughput_audio_s_per_s", "audio s/s"))
        for key, label in (*figures, ("max_gap_s", "max gap s")):
            rows.append((f"{clients} clients: {label}", row.get(key), previous.get(key)))
        bad = ("failures", "wrong", "hung")
        rows.append((f"{clients} clients: failures + wrong + hung", sum(row[k] for k in bad), sum(previous[k] for k in bad)))
    for key, label in (("memory_mb_1_voice", "peak RSS MB, 1 voice"), ("memory_mb_3_voices", "peak RSS MB, 3 voices")):
        rows.append((label, now[key], then[key]))
    for key, label in (("cold_start_s_1_voice", "cold start s, 1 voice"), ("cold_start_s_3_voices", "cold start s, 3 voices")):
        rows.append((label, now[key], then[key]))
    lines = [
        "",
        f"## Against `{baseline['revision']}` (`{baseline['commit']}`), measured in this run",
        "",
        "| figure | now | baseline | now / baseline |",
        "|---|---|---|---|",
    ]
    for label, current, previous in rows:
        quotient = current / previous if isinstance(current, (int, float)) and previous else None
        lines.append(f"| {label} | {fmt(current)} | {fmt(previous)} | {fmt(quotient)} |")
    return lines


def plots(results: dict, folder: Path) -> None:
    import matplotlib  # noqa: PLC0415  (requirements-bench.txt: only drawing needs it, not the tables)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  (the backend must be chosen first)

    figure, axis = plt.subplots(figsize=(6, 4))
    for contender, key in (("ours", "concurrency"), ("Genie server", "genie_server_concurrency")):
        rows = results[key]
        levels = [int(level) for level in rows if rows[level]["p50_ttfa_s"] is not None]
        axis.plot(levels, [rows[str(level)]["p50_ttfa_s"] for level in levels], marker="o", label=f"{contender} p50")
        axis.plot(
            levels, [rows[str(level)]["p95_ttfa_s"] for level in levels], marker="x", linestyle="--", label=f"{contender} p95"
        )
        for level in levels:  # percentiles of a level with failed or hung requests cover only the survivors
            row = rows[str(level)]
            if row["failures"]:  # hung requests are among the failures
                axis.annotate(
                    f"{row['failures']} of {row['requests']} failed ({row['hung']} hung)",
                    (level, row["p50_ttfa_s"]),
                    textcoords="offset points",
                    xytext=(5, -12),
                    fontsize=8,
                )
    axis.set_xlabel("concurrent clients")
    axis.set_ylabel("time to first audio (s)")
    axis.set_title("Time to first audio vs concurrency")
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "ttfa_vs_concurrency.png", dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4))
    for contender, arrivals in results["timeline"].items():
        if not arrivals:
            continue
        times = [t for t, _ in arrivals]
        audio = [b / 64000 for _, b in arrivals]
        axis.step(times, audio, where="post", label=f"{contender}: audio received")
    ours = results["timeline"].get("ours")
    if ours:
        t0 = ours[0][0]
        end = ours[-1][1] / 64000
        axis.plot([t0, t0 + end], [0, end], linestyle=":", color="gray", label="ours: playback from first byte")
    axis.set_xlabel("seconds since request")
    axis.set_ylabel("seconds of audio")
    axis.set_title("Paragraph, one client: when each segment's audio arrived")
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "paragraph_timeline.png", dpi=100)
    plt.close(figure)


def write(results: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "latest.md").write_text(markdown(results), encoding="utf-8")
    plots(results, folder)
