"""The benchmark run: every contender on the same voice, texts and machine, in one process tree and one run.

Single-client figures come from interleaved rounds (repeat 1 of every contender, then repeat 2 of every
contender, ...), each contender freshly started per round, so slow drift of a shared machine spreads over all
contenders instead of landing on one; medians are reported with their min-max spread.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.contenders import ROOT, GenieServer, OurServer, copy_name, run_genie_direct
from bench.measure import Sample, median, percentile, spread, stream_request
from bench.report import fmt
from bench.targets import ratio, targets
from bench.texts import CONCURRENT, TEXTS, WARMUPS
from tests.server_process import ServerProcess

Log = Callable[[str], None]


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int  # interleaved rounds of single-client figures, and repeats per concurrency level
    levels: tuple[int, ...]  # our concurrency levels
    genie_levels: tuple[int, ...]  # Genie's server is restarted before each level (it hangs under load)
    timeout_s: float  # a request still unfinished after this counts as hung
    many_voices: int = 8  # the memory figure for a server with many voices


# Full mode keeps the levels the targets read (up to 4 clients) and no longer runs 8: with 3 repeats that
# level alone took about 100 s. Genie's server hangs at 2 clients already, and each further level costs a
# restart plus a timeout, so it stops at 2. latest.json's "run" names the levels that were run.
QUICK = Mode("quick", repeats=1, levels=(1, 2, 4), genie_levels=(1, 2), timeout_s=90)
FULL = Mode("full", repeats=3, levels=(1, 2, 4), genie_levels=(1, 2), timeout_s=90)

SERVER_FIGURES = ("ttfa_s", "total_s", "audio_s", "rtf", "stall_s", "max_gap_s")


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
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "genie_tts": version("genie-tts"),
        "onnxruntime": version("onnxruntime"),
        "uvicorn": version("uvicorn"),
        "ours_revision": revision or "unknown",
    }


def cpu_flags() -> str:
    """The CPU features onnxruntime's kernels pick by (bf16, AMX, VNNI), as listed in /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    line = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "") if cpuinfo.exists() else ""
    wanted = [flag for flag in line.split(":", 1)[-1].split() if "bf16" in flag or "amx" in flag or "vnni" in flag]
    return " ".join(sorted(set(wanted)))


def interleaved(contenders: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """The order of single-client rounds: (repeat, contender), every contender once per repeat."""
    return [(repeat, name) for repeat in range(repeats) for name in contenders]


def summarize(samples: list[Sample]) -> dict[str, object]:
    """Medians of the successful samples, with each figure's [min, max] under "spread"."""
    good = [sample for sample in samples if sample.ok]
    values = {key: [v for v in (getattr(sample, key) for sample in good) if v is not None] for key in SERVER_FIGURES}
    return {
        "n": len(samples),
        "failures": len(samples) - len(good),
        **{key: median(found) for key, found in values.items()},
        "spread": {key: spread(found) for key, found in values.items()},
    }


def summarize_direct(runs: list[dict[str, float]]) -> dict[str, object]:
    totals, audio = [run["total_s"] for run in runs], [run["audio_s"] for run in runs]
    return {"total_s": median(totals), "audio_s": median(audio), "spread": {"total_s": spread(totals), "audio_s": spread(audio)}}


def round_figure(sample: Sample) -> str:
    """One text's figures in a round's progress line: "TTFA/total", or why it failed."""
    if not sample.ok:
        return f"FAILED ({sample.error or f'status {sample.status}'})"
    return f"{fmt(sample.ttfa_s)}/{fmt(sample.total_s)}"


def one(contender, running: ServerProcess, text: str, mode: Mode, voice: str | None = None) -> Sample:
    """`text` spoken by `voice` (the contender's own voice unless named), streamed and timed."""
    url, payload = contender.request(running, text, voice or contender.voice)
    return stream_request(url, payload, contender.header_bytes, mode.timeout_s)


def worst_gap(samples: list[Sample]) -> float | None:
    """The longest gap any served client of one concurrent round saw (None when none was served)."""
    return max((sample.max_gap_s for sample in samples if sample.ok), default=None)


def concurrent(
    contender, running: ServerProcess, clients: int, repeats: int, mode: Mode, expected: dict[str, int]
) -> dict[str, object]:
    """`clients` simultaneous requests with distinct texts, `repeats` times.

    TTFA percentiles pool every request; `max_gap_s` is the worst gap over the clients of one repeat, as a
    median over repeats (spread beside it).
    """
    ttfas: list[float] = []
    gaps: list[float] = []
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
        gap = worst_gap([sample for sample in results if sample is not None])
        if gap is not None:
            gaps.append(gap)
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
        "max_gap_s": median(gaps),
        "spread": {"max_gap_s": spread(gaps)},
    }


def expected_lengths(contender, running: ServerProcess, mode: Mode) -> dict[str, int]:
    """Each concurrent text's audio length when served alone (the voice's length rule makes it deterministic)."""
    lengths = {}
    for text in dict.fromkeys(CONCURRENT):
        sample = one(contender, running, text, mode)
        lengths[text] = sample.audio_bytes if sample.ok else 0
    return lengths


@dataclass
class Tally:
    """What the rounds of one server contender gathered."""

    samples: dict[str, list[Sample]]
    cold_starts: list[float]
    cached_starts: list[float]
    peak_rss_mb: float = 0.0

    def summary(self) -> dict[str, dict]:
        return {name: summarize(found) for name, found in self.samples.items()}


class ServerRounds:
    """One server contender's single-client rounds: each a fresh start, a warm-up, each text once.

    `texts`: {name: text}; `warmup`: spoken first in every round, untimed. With `cached`, every round also
    starts the server a second time on the CACHE_DIR its first start filled: the cached cold start. Every
    first start gets an empty CACHE_DIR (our servers; Genie's has no such setting).
    """

    def __init__(
        self,
        contender,
        texts: Mapping[str, str],
        mode: Mode,
        scratch: Path,
        *,
        cached: bool,
        settings: dict | None = None,
        warmup: str = WARMUPS["ja"],
    ):
        self.contender, self.texts, self.mode, self.scratch = contender, dict(texts), mode, scratch
        self.cached, self.settings, self.warmup = cached, settings or {}, warmup
        self.tally = Tally({name: [] for name in texts}, [], [])

    def summary(self) -> dict[str, dict]:
        return self.tally.summary()

    def start(self, settings: dict[str, str]) -> ServerProcess:
        if isinstance(self.contender, GenieServer):
            return self.contender.start(voices=1)
        return self.contender.start(voices=1, settings={**self.settings, **settings})

    def __call__(self, repeat: int, log: Log) -> None:
        cache = self.scratch / f"cache-{self.contender.name}-round{repeat + 1}"
        shutil.rmtree(cache, ignore_errors=True)
        settings = {"CACHE_DIR": str(cache)}
        running = self.start(settings)
        self.tally.cold_starts.append(running.cold_start_s)
        try:
            one(self.contender, running, self.warmup, self.mode)
            for name, text in self.texts.items():
                self.tally.samples[name].append(one(self.contender, running, text, self.mode))
            self.tally.peak_rss_mb = max(self.tally.peak_rss_mb, running.peak_rss_mb())
        finally:
            running.stop()
        figures = {name: round_figure(found[-1]) for name, found in self.tally.samples.items()}
        log(f"{self.contender.name} round {repeat + 1}: ready in {running.cold_start_s:.1f} s; TTFA/total s {figures}")
        if not self.cached:
            shutil.rmtree(cache, ignore_errors=True)
            return
        running = self.start(settings)
        try:
            check = one(self.contender, running, self.warmup, self.mode)
            if not check.ok:
                raise RuntimeError(f"{self.contender.name} on a filled CACHE_DIR failed a request: {check.error or check.status}")
            self.tally.cached_starts.append(running.cold_start_s)
        finally:
            running.stop()
            shutil.rmtree(cache, ignore_errors=True)
        log(f"{self.contender.name} round {repeat + 1}: second start on the same CACHE_DIR in {running.cold_start_s:.1f} s")


class DirectRounds:
    """Genie called directly, one process per round, each text once (`language`: the voice's, as Genie names it)."""

    def __init__(
        self,
        voice_dir: Path,
        genie_data: Path,
        scratch: Path,
        texts: Mapping[str, str] = TEXTS,
        language: str = "ja",
        name: str = "genie_direct",
        warmup: str = WARMUPS["ja"],
    ):
        self.voice_dir, self.genie_data, self.scratch = voice_dir, genie_data, scratch
        self.texts, self.language, self.name, self.warmup = dict(texts), language, name, warmup
        self.runs: dict[str, list[dict[str, float]]] = {name: [] for name in texts}

    def __call__(self, repeat: int, log: Log) -> None:
        found = run_genie_direct(self.voice_dir, self.genie_data, self.texts, 1, self.scratch, self.language, self.warmup)
        for name, runs in found.items():
            self.runs[name].extend(runs)
        totals = {name: round(runs[-1]["total_s"], 2) for name, runs in self.runs.items()}
        log(f"{self.name} round {repeat + 1}: total s {totals}")

    def summary(self) -> dict[str, dict]:
        return {name: summarize_direct(runs) for name, runs in self.runs.items()}


def concurrency_phase(contender, mode: Mode, log: Log) -> tuple[dict[str, object], float]:
    """One server's concurrency levels; its peak RSS over them."""
    levels = mode.levels if isinstance(contender, OurServer) else mode.genie_levels
    results: dict[str, object] = {}
    running = contender.start(voices=1)
    peak = 0.0
    try:
        expected = expected_lengths(contender, running, mode)
        for clients in levels:
            if isinstance(contender, GenieServer) and clients > 1:
                peak = max(peak, running.peak_rss_mb())
                running.stop()  # a fresh server per level: a hung request poisons Genie's global player
                running = contender.start(voices=1)
            # One repeat for Genie's server: its requests hang until the timeout, and one round shows it.
            repeats = mode.repeats if isinstance(contender, OurServer) else 1
            results[str(clients)] = concurrent(contender, running, clients, repeats, mode, expected)
            log(f"{contender.name}: {clients} clients: {results[str(clients)]}")
        peak = max(peak, running.peak_rss_mb())
    finally:
        running.stop()
    return results, peak


def many_voices(contender, count: int, mode: Mode, log: Log) -> tuple[float, float]:
    """Cold start and peak RSS of a server with `count` copies of the demo voice, each spoken once."""
    running = contender.start(voices=count)
    try:
        for index in range(count):
            voice = copy_name(contender.voice, index)
            sample = one(contender, running, TEXTS["short"], mode, voice)
            if not sample.ok:
                raise RuntimeError(f"{contender.name} with {count} voices: {voice} failed: {sample.error or sample.status}")
        figures = running.cold_start_s, running.peak_rss_mb()
    finally:
        running.stop()
    log(f"{contender.name}: {count} voices: cold start {figures[0]:.1f} s, peak RSS {figures[1]:.0f} MB")
    return figures


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def predicted_mb(one_voice: float, three_voices: float, count: int) -> float:
    """RSS of `count` voices, extrapolated linearly from the 1- and 3-voice figures."""
    return one_voice + (count - 1) * max(0.0, three_voices - one_voice) / 2


def baseline_checkout(revision: str, scratch: Path) -> Path:
    """A detached git worktree of `revision` (a commit, tag or branch of this repository) under `scratch`."""
    path = scratch / "baseline"
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
    add = ["git", "worktree", "add", "--detach", "--force", str(path), revision]
    subprocess.run(add, cwd=ROOT, check=True, capture_output=True)
    return path


def require_int8() -> None:
    """Fail at once, not after the other contenders, when this checkout has no T2S_PRECISION setting: the
    server would ignore the variable and the int8 figures would silently be fp32's."""
    from settings import Settings  # noqa: PLC0415  (the checkout's own settings, as server.py reads them)

    if "t2s_precision" not in {item.name for item in fields(Settings)}:
        raise RuntimeError("settings.py has no T2S_PRECISION: the int8 T2S work is not in this checkout (or use --without-int8)")


def bench_voice(with_int8: bool) -> tuple[Path, Path]:
    """The demo voice (and its GenieData) every contender speaks with; with its int8 T2S decoders if asked."""
    if with_int8:
        from bench.fidelity import demo_voice  # noqa: PLC0415  (comes with the int8 T2S work; without it the run fails here)

        return demo_voice()
    from engine.tools.demo import ensure_demo  # noqa: PLC0415
    from engine.voices.demo_voices import BUILD_VERSION

    return ensure_demo(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}")


def measure_fidelity(voice_dir: Path, genie_data: Path) -> dict[str, float]:
    """int8 against fp32 T2S with deterministic sampling, over the bench texts (bench/fidelity.py)."""
    from bench import fidelity  # noqa: PLC0415  (comes with the int8 T2S work; without it the run fails here)

    measured = fidelity.int8_figures(voice_dir, genie_data)
    return {key: measured[key] for key in ("top1_agreement", "sequence_agreement", "step_ms_fp32", "step_ms_int8")}


def run(mode: Mode, scratch: Path, log: Log, baseline: str | None = None, with_int8: bool = True) -> dict[str, object]:
    """Every contender, in one run; with `baseline`, also our server at that git revision, as one more contender."""
    if with_int8:
        require_int8()
    voice_dir, genie_data = bench_voice(with_int8)
    scratch.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    fidelity = None
    if with_int8:
        fidelity = measure_fidelity(voice_dir, genie_data)
        log(f"int8 fidelity: {fidelity}")

    texts = TEXTS
    ours = ServerRounds(OurServer(voice_dir, genie_data, scratch), texts, mode, scratch, cached=True)
    genie = ServerRounds(GenieServer(voice_dir, genie_data, scratch), texts, mode, scratch, cached=False)
    direct = DirectRounds(voice_dir, genie_data, scratch)
    servers = {"ours": ours}
    checkout = baseline_checkout(baseline, scratch) if baseline else None
    if checkout is not None:
        then = OurServer(voice_dir, genie_data, scratch, checkout, name="ours_baseline")
        servers["ours_baseline"] = ServerRounds(then, texts, mode, scratch, cached=False)
    servers["genie_server"] = genie
    rounds: dict[str, Callable[[int, Log], None]] = {**servers, "genie_direct": direct}
    int8_rounds = None
    if with_int8:
        int8_server = OurServer(voice_dir, genie_data, scratch, name="ours_int8")
        paragraph = {"paragraph": TEXTS["paragraph"]}
        int8_rounds = ServerRounds(int8_server, paragraph, mode, scratch, cached=False, settings={"T2S_PRECISION": "int8"})
        rounds["ours_int8"] = int8_rounds
    try:
        for repeat, name in interleaved(list(rounds), mode.repeats):
            rounds[name](repeat, log)
        phases = {name: concurrency_phase(server.contender, mode, log) for name, server in servers.items()}
        three = {name: many_voices(server.contender, 3, mode, log) for name, server in servers.items()}
    finally:
        if checkout is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False)

    def server_result(name: str) -> dict[str, Any]:
        tally = servers[name].tally
        concurrency, peak = phases[name]
        return {
            "single": tally.summary(),
            "concurrency": concurrency,
            "timeline": tally.samples["paragraph"][-1].arrivals if tally.samples["paragraph"][-1].ok else [],
            "cold_start_s_1_voice": median(tally.cold_starts),
            "memory_mb_1_voice": max(peak, tally.peak_rss_mb),
            "cold_start_s_3_voices": three[name][0],
            "memory_mb_3_voices": three[name][1],
        }

    now, theirs = server_result("ours"), server_result("genie_server")
    direct_single = direct.summary()
    log(f"genie direct: {direct_single}")

    many = f"ours_{mode.many_voices}_voices"
    many_start = many_rss = None
    not_measured: dict[str, str] = {} if with_int8 else {"int8": "run with --without-int8"}
    needed = predicted_mb(now["memory_mb_1_voice"], now["memory_mb_3_voices"], mode.many_voices)
    room = 0.85 * available_mb()
    if needed <= room:
        many_start, many_rss = many_voices(ours.contender, mode.many_voices, mode, log)
    else:  # starting it would push the shared machine into swap or the OOM killer
        not_measured[many] = (
            f"not started: {mode.many_voices} voices would need about {needed:.0f} MB (extrapolated from the 1- and "
            f"3-voice figures), {room:.0f} MB are available (85% of MemAvailable)"
        )
        log(f"ours: {not_measured[many]}")

    single: dict[str, object] = {"ours": now["single"], "genie_server": theirs["single"], "genie_direct": direct_single}
    int8 = None
    if int8_rounds is not None and fidelity is not None:
        int8_paragraph = int8_rounds.tally.summary()["paragraph"]
        single["ours_int8"] = {"paragraph": int8_paragraph}
        int8 = {
            "total_ratio_per_audio_s": per_audio_ratio(int8_paragraph, direct_single["paragraph"]),
            "top1_agreement": fidelity["top1_agreement"],
            "sequence_agreement": fidelity["sequence_agreement"],
            "step_ms_fp32": fidelity["step_ms_fp32"],
            "step_ms_int8": fidelity["step_ms_int8"],
            "ours_total_s": int8_paragraph["total_s"],
            "ours_audio_s": int8_paragraph["audio_s"],
        }
    starts = {
        "ours_1_voice": ours.tally.cold_starts,
        "ours_1_voice_cached": ours.tally.cached_starts,
        "genie_server_1_voice": genie.tally.cold_starts,
    }
    results: dict[str, object] = {
        "run": {
            "mode": mode.name,
            "started_utc": started.isoformat(timespec="seconds"),
            "repeats": mode.repeats,
            "rounds": list(rounds),
            "levels": list(mode.levels),
            "genie_levels": list(mode.genie_levels),
            "many_voices": mode.many_voices,
        },
        "machine": machine(),
        "paragraph_1_client": paragraph_figures(
            now["single"]["paragraph"], theirs["single"]["paragraph"], direct_single["paragraph"]
        ),
        "sentence_1_client": first_audio(now["single"]["sentence"], theirs["single"]["sentence"]),
        "short_1_client": first_audio(now["single"]["short"], theirs["single"]["short"]),
        "single": single,
        "concurrency": now["concurrency"],
        "genie_server_concurrency": theirs["concurrency"],
        "memory_mb": {
            "ours_1_voice": now["memory_mb_1_voice"],
            "ours_3_voices": now["memory_mb_3_voices"],
            many: many_rss,
            "genie_server_1_voice": theirs["memory_mb_1_voice"],
            "genie_server_3_voices": theirs["memory_mb_3_voices"],
        },
        "cold_start_s": {
            "ours_1_voice": now["cold_start_s_1_voice"],
            "ours_1_voice_cached": median(ours.tally.cached_starts),
            "ours_3_voices": now["cold_start_s_3_voices"],
            many: many_start,
            "genie_server_1_voice": theirs["cold_start_s_1_voice"],
            "genie_server_3_voices": theirs["cold_start_s_3_voices"],
        },
        "cold_start_spread_s": {key: spread(values) for key, values in starts.items()},
        "int8": int8,
        "not_measured": not_measured,
        "timeline": {"ours": now["timeline"], "genie_server": theirs["timeline"]},
        "baseline": None,
    }
    results["targets"] = targets(results)
    if baseline:
        previous = server_result("ours_baseline")
        previous.pop("timeline")
        head = subprocess.run(["git", "rev-parse", "--short", baseline], cwd=ROOT, capture_output=True, text=True)
        current = {key: value for key, value in now.items() if key != "timeline"}
        results["baseline"] = {"revision": baseline, "commit": head.stdout.strip(), **previous, "current": current}
    return results


def per_audio_ratio(ours: dict, direct: dict) -> float | None:
    """Time per second of audio, ours over Genie direct's: segmenting differently yields slightly different
    amounts of audio (each segment starts with a pause token), so totals are compared per audio second."""
    return ratio(ratio(ours["total_s"], ours["audio_s"]), ratio(direct["total_s"], direct["audio_s"]))


def first_audio(ours: dict, genie: dict) -> dict[str, float | None]:
    return {"ours_ttfa_s": ours["ttfa_s"], "genie_server_ttfa_s": genie["ttfa_s"]}


def paragraph_figures(ours: dict, genie: dict, direct: dict) -> dict[str, float | None]:
    paragraph = {
        "ours_ttfa_s": ours["ttfa_s"],
        "genie_server_ttfa_s": genie["ttfa_s"],
        "ours_total_s": ours["total_s"],
        "genie_server_total_s": genie["total_s"],
        "genie_direct_total_s": direct["total_s"],
        "ours_audio_s": ours["audio_s"],
        "genie_direct_audio_s": direct["audio_s"],
        "ours_stall_s": ours["stall_s"],
        "genie_server_stall_s": genie["stall_s"],
    }
    paragraph["ttfa_ratio"] = ratio(paragraph["ours_ttfa_s"], paragraph["genie_server_ttfa_s"])
    paragraph["total_ratio"] = ratio(paragraph["ours_total_s"], paragraph["genie_direct_total_s"])
    paragraph["total_ratio_per_audio_s"] = per_audio_ratio(ours, direct)
    return paragraph
