"""The benchmark run: every contender on the same voice, texts and machine, in one process tree and one run."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from bench.contenders import ROOT, GenieServer, OurServer, run_genie_direct
from bench.measure import Sample, median, percentile, stream_request
from bench.texts import CONCURRENT, TEXTS
from tests.server_process import ServerProcess


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int  # per single-client point, and per concurrency level
    levels: tuple[int, ...]  # our concurrency levels
    genie_levels: tuple[int, ...]  # Genie's server is restarted before each level (it hangs under load)
    timeout_s: float  # a request still unfinished after this counts as hung


QUICK = Mode("quick", repeats=1, levels=(1, 2, 4), genie_levels=(1, 2), timeout_s=90)
FULL = Mode("full", repeats=3, levels=(1, 2, 4, 8), genie_levels=(1, 2, 4), timeout_s=120)


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "genie_tts": version("genie-tts"),
        "onnxruntime": version("onnxruntime"),
        "uvicorn": version("uvicorn"),
        "ours_revision": revision or "unknown",
    }


def summarize(samples: list[Sample]) -> dict[str, float | int | None]:
    good = [sample for sample in samples if sample.ok]
    return {
        "n": len(samples),
        "failures": len(samples) - len(good),
        "ttfa_s": median([s.ttfa_s for s in good if s.ttfa_s is not None]),
        "total_s": median([s.total_s for s in good]),
        "audio_s": median([s.audio_s for s in good]),
        "rtf": median([s.rtf for s in good if s.rtf is not None]),
        "stall_s": median([s.stall_s for s in good]),
    }


def one(contender, running: ServerProcess, text: str, mode: Mode, voice: str = "demo") -> Sample:
    url, payload = contender.request(running, text, voice)
    return stream_request(url, payload, contender.header_bytes, mode.timeout_s)


def concurrent(
    contender, running: ServerProcess, clients: int, repeats: int, mode: Mode, expected: dict[str, int]
) -> dict[str, object]:
    """`clients` simultaneous requests with distinct texts, `repeats` times."""
    ttfas: list[float] = []
    failures = wrong = hung = 0
    audio = wall = 0.0
    for _ in range(repeats):
        texts = [CONCURRENT[index % len(CONCURRENT)] for index in range(clients)]
        results: list[Sample | None] = [None] * clients
        barrier = threading.Barrier(clients)

        def client(index: int, barrier: threading.Barrier = barrier, results: list = results, texts: list = texts) -> None:
            barrier.wait()
            results[index] = one(contender, running, texts[index], mode)

        threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall += time.perf_counter() - started
        for text, sample in zip(texts, results, strict=True):
            assert sample is not None
            hung += sample.hung
            if not sample.ok:
                failures += 1
                continue
            audio += sample.audio_s
            if sample.ttfa_s is not None:
                ttfas.append(sample.ttfa_s)
            length_ok = abs(sample.audio_bytes - expected[text]) <= 0.01 * expected[text]
            wrong += not (sample.riff and length_ok)
    return {
        "clients": clients,
        "requests": clients * repeats,
        "failures": failures,
        "wrong": wrong,
        "hung": hung,
        "p50_ttfa_s": percentile(ttfas, 50),
        "p95_ttfa_s": percentile(ttfas, 95),
        "throughput_audio_s_per_s": audio / wall if wall else None,
    }


def expected_lengths(contender, running: ServerProcess, mode: Mode) -> dict[str, int]:
    """Each concurrent text's audio length when served alone (the voice's length rule makes it deterministic)."""
    lengths = {}
    for text in dict.fromkeys(CONCURRENT):
        sample = one(contender, running, text, mode)
        lengths[text] = sample.audio_bytes if sample.ok else 0
    return lengths


def bench_server(contender, mode: Mode, log) -> dict[str, object]:
    """Single-client figures, concurrency, memory and cold start of one server contender."""
    result: dict[str, object] = {"single": {}, "concurrency": {}, "timeline": []}
    running = contender.start(voices=1)
    result["cold_start_s_1_voice"] = running.cold_start_s
    log(f"{contender.name}: ready in {running.cold_start_s:.1f} s")
    try:
        one(contender, running, TEXTS["short"], mode)  # warm-up
        for name, text in TEXTS.items():
            samples = [one(contender, running, text, mode) for _ in range(mode.repeats)]
            result["single"][name] = summarize(samples)
            log(f"{contender.name}: {name}: {result['single'][name]}")
            if name == "paragraph" and samples[-1].ok:
                result["timeline"] = samples[-1].arrivals
        expected = expected_lengths(contender, running, mode)
        levels = mode.levels if isinstance(contender, OurServer) else mode.genie_levels
        for clients in levels:
            if isinstance(contender, GenieServer) and clients > 1:
                running.stop()  # a fresh server per level: a hung request poisons Genie's global player
                running = contender.start(voices=1)
            # One repeat for Genie's server: its requests hang until the timeout, and one round shows it.
            repeats = mode.repeats if isinstance(contender, OurServer) else 1
            result["concurrency"][str(clients)] = concurrent(contender, running, clients, repeats, mode, expected)
            log(f"{contender.name}: {clients} clients: {result['concurrency'][str(clients)]}")
        result["memory_mb_1_voice"] = running.peak_rss_mb()
    finally:
        running.stop()
    running = contender.start(voices=3)
    try:
        result["cold_start_s_3_voices"] = running.cold_start_s
        for voice in ("demo", "demo2", "demo3"):
            one(contender, running, TEXTS["short"], mode, voice)
        result["memory_mb_3_voices"] = running.peak_rss_mb()
        log(
            f"{contender.name}: 3 voices: cold start {running.cold_start_s:.1f} s, peak RSS {result['memory_mb_3_voices']:.0f} MB"
        )
    finally:
        running.stop()
    return result


def baseline_checkout(revision: str, scratch: Path) -> Path:
    """A detached git worktree of `revision` (a commit, tag or branch of this repository) under `scratch`."""
    path = scratch / "baseline"
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
    add = ["git", "worktree", "add", "--detach", "--force", str(path), revision]
    subprocess.run(add, cwd=ROOT, check=True, capture_output=True)
    return path


def bench_baseline(revision: str, voice_dir: Path, genie_data: Path, scratch: Path, mode: Mode, log) -> dict[str, object]:
    """Our server at another revision, measured like the current one in the same run: a regression check."""
    checkout = baseline_checkout(revision, scratch)
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
        commit = head.stdout.strip()
        result = bench_server(OurServer(voice_dir, genie_data, scratch, checkout, name="ours_baseline"), mode, log)
        result.pop("timeline")
        return {"revision": revision, "commit": commit, **result}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def run(mode: Mode, scratch: Path, log, baseline: str | None = None) -> dict[str, object]:
    """Every contender, in one run; with `baseline`, also our server at that git revision, right after ours."""
    from engine.tools.demo import BUILD_VERSION, ensure_demo

    voice_dir, genie_data = ensure_demo(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}")
    scratch.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    ours = bench_server(OurServer(voice_dir, genie_data, scratch), mode, log)
    ours_baseline = bench_baseline(baseline, voice_dir, genie_data, scratch, mode, log) if baseline else None
    genie = bench_server(GenieServer(voice_dir, genie_data, scratch), mode, log)
    direct_raw = run_genie_direct(voice_dir, genie_data, TEXTS, mode.repeats, scratch)
    direct = {
        name: {"total_s": median([r["total_s"] for r in runs]), "audio_s": median([r["audio_s"] for r in runs])}
        for name, runs in direct_raw.items()
    }
    log(f"genie direct: {direct}")

    paragraph = {
        "ours_ttfa_s": ours["single"]["paragraph"]["ttfa_s"],
        "genie_server_ttfa_s": genie["single"]["paragraph"]["ttfa_s"],
        "ours_total_s": ours["single"]["paragraph"]["total_s"],
        "genie_server_total_s": genie["single"]["paragraph"]["total_s"],
        "genie_direct_total_s": direct["paragraph"]["total_s"],
        "ours_audio_s": ours["single"]["paragraph"]["audio_s"],
        "genie_direct_audio_s": direct["paragraph"]["audio_s"],
        "ours_stall_s": ours["single"]["paragraph"]["stall_s"],
        "genie_server_stall_s": genie["single"]["paragraph"]["stall_s"],
    }
    paragraph["ttfa_ratio"] = ratio(paragraph["ours_ttfa_s"], paragraph["genie_server_ttfa_s"])
    paragraph["total_ratio"] = ratio(paragraph["ours_total_s"], paragraph["genie_direct_total_s"])
    # Segmenting differently yields slightly different amounts of audio (each segment starts with a pause
    # token), so "same total audio" is compared per second of audio produced.
    paragraph["total_ratio_per_audio_s"] = ratio(
        ratio(paragraph["ours_total_s"], paragraph["ours_audio_s"]),
        ratio(paragraph["genie_direct_total_s"], paragraph["genie_direct_audio_s"]),
    )
    four = ours["concurrency"].get("4", {})
    single_ttfa = ours["concurrency"]["1"]["p50_ttfa_s"]
    targets = [
        {"target": "paragraph, 1 client: our TTFA <= 0.35 x Genie server's", "measured": paragraph["ttfa_ratio"], "limit": 0.35},
        {"target": "paragraph, 1 client: no playback stall (s)", "measured": paragraph["ours_stall_s"], "limit": 0.0},
        {
            "target": "paragraph: our time per audio second <= 1.05 x Genie direct's",
            "measured": paragraph["total_ratio_per_audio_s"],
            "limit": 1.05,
        },
        {
            "target": "4 clients: failures + wrong + hung = 0",
            "measured": sum(four.get(k, 0) for k in ("failures", "wrong", "hung")),
            "limit": 0,
        },
        {
            "target": "4 clients: p95 TTFA <= 3 x single-client TTFA",
            "measured": ratio(four.get("p95_ttfa_s"), single_ttfa),
            "limit": 3.0,
        },
    ]
    without_timeline = {key: value for key, value in ours.items() if key != "timeline"}
    for target in targets:
        target["met"] = target["measured"] is not None and target["measured"] <= target["limit"]
    return {
        "run": {"mode": mode.name, "started_utc": started.isoformat(timespec="seconds"), "repeats": mode.repeats},
        "machine": machine(),
        "paragraph_1_client": paragraph,
        "single": {"ours": ours["single"], "genie_server": genie["single"], "genie_direct": direct},
        "concurrency": ours["concurrency"],
        "genie_server_concurrency": genie["concurrency"],
        "memory_mb": {
            "ours_1_voice": ours["memory_mb_1_voice"],
            "ours_3_voices": ours["memory_mb_3_voices"],
            "genie_server_1_voice": genie["memory_mb_1_voice"],
            "genie_server_3_voices": genie["memory_mb_3_voices"],
        },
        "cold_start_s": {
            "ours_1_voice": ours["cold_start_s_1_voice"],
            "ours_3_voices": ours["cold_start_s_3_voices"],
            "genie_server_1_voice": genie["cold_start_s_1_voice"],
            "genie_server_3_voices": genie["cold_start_s_3_voices"],
        },
        "targets": targets,
        "timeline": {"ours": ours["timeline"], "genie_server": genie["timeline"]},
        "baseline": None if ours_baseline is None else {**ours_baseline, "current": without_timeline},
    }
