"""Writing one run's results: latest.json, latest.md and two plots. Only ever from a single run's dict."""

from __future__ import annotations

import json
from pathlib import Path


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: dict) -> str:
    run, machine, paragraph = results["run"], results["machine"], results["paragraph_1_client"]
    lines = [
        "# Benchmark results",
        "",
        f"One run, `{run['mode']}` mode, started {run['started_utc']} ({run['repeats']} repeat(s) per point, medians).",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; Python {machine['python']},",
        f"genie-tts {machine['genie_tts']}, onnxruntime {machine['onnxruntime']}, uvicorn {machine['uvicorn']}, "
        f"ours at `{machine['ours_revision']}`.",
        "Voice: the generated demo voice with its length rule (2 semantic tokens per phoneme), so every system does",
        "the same, realistic amount of model work. TTFA is the first *audio* byte (after our 44-byte WAV header).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for target in results["targets"]:
        lines.append(f"| {target['target']} | {fmt(target['measured'])} | {'yes' if target['met'] else '**no**'} |")
    lines += [
        "",
        "## One client",
        "",
        "| contender | text | TTFA s | total s | audio s | RTF | stall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for contender in ("ours", "genie_server"):
        for text, row in results["single"][contender].items():
            lines.append(
                f"| {contender} | {text} | {fmt(row['ttfa_s'])} | {fmt(row['total_s'])} | {fmt(row['audio_s'])} "
                f"| {fmt(row['rtf'])} | {fmt(row['stall_s'])} |"
            )
    for text, row in results["single"]["genie_direct"].items():
        lines.append(
            f"| genie_direct | {text} | - | {fmt(row['total_s'])} | {fmt(row['audio_s'])} "
            f"| {fmt(row['total_s'] / row['audio_s'] if row['audio_s'] else None)} | - |"
        )
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
        "| contender | clients | requests | failures | wrong | hung | p50 TTFA s | p95 TTFA s | audio s per s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for contender, key in (("ours", "concurrency"), ("genie_server", "genie_server_concurrency")):
        for clients, row in results[key].items():
            lines.append(
                f"| {contender} | {clients} | {row['requests']} | {row['failures']} | {row['wrong']} | {row['hung']} | "
                f"{fmt(row['p50_ttfa_s'])} | {fmt(row['p95_ttfa_s'])} | {fmt(row['throughput_audio_s_per_s'])} |"
            )
    lines += [
        "",
        "A response counts as wrong when it has no RIFF header or its length differs by more than 1% from the",
        "same text served alone. Genie's server sends raw PCM labelled audio/wav, so all its responses lack RIFF.",
        "",
        "## Memory and cold start (reported; targets come later)",
        "",
        "| | peak RSS MB | cold start s |",
        "|---|---|---|",
    ]
    for key in ("ours_1_voice", "ours_3_voices", "genie_server_1_voice", "genie_server_3_voices"):
        lines.append(
            f"| {key.replace('_', ' ')} | {fmt(results['memory_mb'][key], 0)} | {fmt(results['cold_start_s'][key], 1)} |"
        )
    if results.get("baseline"):
        lines += baseline_section(results["baseline"])
    lines += ["", "![TTFA vs concurrency](ttfa_vs_concurrency.png)", "", "![Paragraph timeline](paragraph_timeline.png)", ""]
    return "\n".join(lines)


def baseline_section(baseline: dict) -> list[str]:
    """Our server now against our server at the baseline revision, measured in the same run."""
    now, then = baseline["current"], baseline
    rows = []
    for text, row in now["single"].items():
        for key, label in (("ttfa_s", "TTFA s"), ("total_s", "total s"), ("rtf", "RTF"), ("stall_s", "stall s")):
            rows.append((f"{text}, 1 client: {label}", row[key], then["single"][text][key]))
    for clients, row in now["concurrency"].items():
        previous = then["concurrency"][clients]
        for key, label in (("p50_ttfa_s", "p50 TTFA s"), ("p95_ttfa_s", "p95 TTFA s"), ("throughput_audio_s_per_s", "audio s/s")):
            rows.append((f"{clients} clients: {label}", row[key], previous[key]))
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
