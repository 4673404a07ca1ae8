"""The long-text phase of the soak: the server's resident memory around long requests, here and at a baseline.

`python -m bench.reliability --only long [--baseline REV]` sends LONG_REQUESTS requests in a row of the same
LONG_CHARS characters of English prose to demo-en (`response_format: pcm`, the client reading as fast as it can)
and samples the server's RSS (/proc/<pid>/status VmRSS) every SAMPLE_S: per request, the idle RSS before it, the
peak during it and the idle RSS after it. With a baseline, the same phase runs against a git worktree of that
revision (its own server, the same text) in the same run, so the report shows both side by side. The phase also
sends DIGITS once and records what comes back (status, seconds to the answer), under a client timeout.
"""

from __future__ import annotations

import itertools
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.server_process import ROOT, ServerProcess, start_server

LONG_REQUESTS = 5
LONG_CHARS = 4096
VOICE = "demo-en"
DIGITS = "999999999999999 " * 256  # 4 KB, about 1,280 s of speech on the demo voice
DIGITS_TIMEOUT_S = 60
SAMPLE_S = 0.25
#: After a request, the idle RSS is read once synthesis has stopped and this long has passed (frees settle).
SETTLE_S = 2.0
REQUEST_TIMEOUT_S = 1800
#: Issue 23's goals: a 4,096-character request raises RSS by at most RISE_GOAL_MB over the idle RSS before it;
#: after five in a row the idle RSS is within FLAT_GOAL of the idle RSS after the first.
RISE_GOAL_MB = 300
FLAT_GOAL = 0.10

_SUBJECTS = ("The old harbour", "Our small village", "The night train", "A quiet library", "The mountain road", "Her garden")
_VERBS = ("wakes slowly", "fills with voices", "grows calm again", "smells of rain", "looks different", "stays busy")
_TIMES = ("before dawn", "every autumn", "after the storm", "on market days", "late in the evening", "in early spring")
_TAILS = (
    "and nobody seems to mind the wait.",
    "while the children run along the path.",
    "so the neighbours stop to talk for a while.",
    "and the light turns gold over the water.",
    "because everyone knows the story by heart.",
    "as if the whole town were holding its breath.",
)


def english_prose(chars: int) -> str:
    """`chars` characters (cut at a word) of plain English sentences, the same for the same length."""
    sentences = (
        f"{subject} {verb} {when}, {tail}" for subject, verb, when, tail in itertools.product(_SUBJECTS, _VERBS, _TIMES, _TAILS)
    )
    text = ""
    for sentence in itertools.cycle(sentences):
        if len(text) + len(sentence) + 1 > chars:
            break
        text = f"{text} {sentence}" if text else sentence
    return text


def rss_mb(pid: int) -> float:
    """The process's resident memory now (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssPeak:
    """The highest VmRSS of a process while the block runs, sampled every SAMPLE_S in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            if self._stop.wait(SAMPLE_S):
                return

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


def wait_idle(base: str, timeout_s: float = 120) -> None:
    """Until no request is active and no synthesis job runs, then SETTLE_S more."""
    deadline = time.monotonic() + timeout_s
    while True:
        synthesis = httpx.get(f"{base}/health", timeout=10).json()["synthesis"]
        if synthesis["active_requests"] == 0 and synthesis["running"] == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"still busy after {timeout_s} s")
        time.sleep(0.1)
    time.sleep(SETTLE_S)


def read_speech(base: str, text: str, timeout_s: float, voice: str = VOICE) -> dict[str, object]:
    """One request read as fast as the client can: its status, audio seconds (PCM 16-bit 32 kHz) and seconds."""
    body = {"model": voice, "input": text, "response_format": "pcm"}
    started = time.monotonic()
    received = 0
    try:
        with httpx.stream("POST", f"{base}/v1/audio/speech", json=body, timeout=timeout_s) as response:
            for chunk in response.iter_bytes():
                received += len(chunk)
                if time.monotonic() - started > timeout_s:
                    return {"status": response.status_code, "outcome": "timeout", "seconds": round(time.monotonic() - started, 2)}
            outcome = "complete" if response.status_code == 200 else "refused"
            status = response.status_code
    except httpx.TimeoutException:
        return {"status": None, "outcome": "timeout", "seconds": round(time.monotonic() - started, 2)}
    except httpx.TransportError as error:  # a stream broken on purpose (an audio limit) or a crash
        return {"status": 200, "outcome": f"broken: {type(error).__name__}", "seconds": round(time.monotonic() - started, 2)}
    return {
        "status": status,
        "outcome": outcome,
        "seconds": round(time.monotonic() - started, 2),
        "audio_s": round(received / (32000 * 2), 1),
    }


def long_requests(server: ServerProcess, text: str, count: int) -> list[dict[str, object]]:
    """`count` requests of `text` in a row, each with the idle RSS before it, its peak and the idle RSS after it."""
    pid, rows = server.process.pid, []
    wait_idle(server.base_url)
    for index in range(count):
        before = rss_mb(pid)
        with RssPeak(pid) as peak:
            answer = read_speech(server.base_url, text, REQUEST_TIMEOUT_S)
        wait_idle(server.base_url)
        after = rss_mb(pid)
        row = {"request": index + 1, **answer, "idle_before_mb": round(before), "peak_mb": round(peak.peak_mb)}
        rows.append({**row, "idle_after_mb": round(after), "rise_mb": round(peak.peak_mb - before)})
        print(f"long text: {rows[-1]}", flush=True)
    return rows


def start_long_server(checkout: Path, name: str, scratch: Path, cache_dir: Path) -> ServerProcess:
    """`python server.py` of `checkout` serving demo-en alone, warmed by one short request."""
    env = {
        "DEMO": "1",
        "DEMO_VOICES": VOICE,
        "CACHE_DIR": str(cache_dir),
        "MODELS_DIR": str(scratch / "no-models"),
        "GENIE_DATA_DIR": str(scratch / "no-genie-data"),
        "GENIE_DOWNLOAD": "0",
        "DRAIN_SECONDS": "0",
    }
    (scratch / "no-models").mkdir(parents=True, exist_ok=True)
    server = start_server(scratch / f"long-{name}.log", env, cwd=checkout, ready_timeout=600)
    read_speech(server.base_url, "Hello, and welcome.", 120)
    return server


def digits_answer(server: ServerProcess) -> dict[str, object]:
    """DIGITS once, bounded by DIGITS_TIMEOUT_S: refused up front (400 audio_too_long), or how long it ran."""
    wait_idle(server.base_url)
    return read_speech(server.base_url, DIGITS, DIGITS_TIMEOUT_S)


def long_phase(checkout: Path, name: str, scratch: Path, cache_dir: Path, count: int, chars: int) -> dict[str, object]:
    text = english_prose(chars)
    server = start_long_server(checkout, name, scratch, cache_dir)
    try:
        rows = long_requests(server, text, count)
        digits = digits_answer(server)
    finally:
        server.stop()
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    return {"revision": revision.stdout.strip() or "unknown", "chars": len(text), "requests": rows, "digits": digits}


@contextmanager
def baseline_worktree(revision: str) -> Iterator[Path]:
    """A detached git worktree of `revision` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gsv-baseline-") as folder:
        path = Path(folder) / "checkout"
        subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT, check=True, capture_output=True)
        try:
            venv = ROOT / ".venv"
            if venv.exists() and not (path / ".venv").exists():
                (path / ".venv").symlink_to(venv.resolve(), target_is_directory=True)
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False, capture_output=True)


def long_run(scratch: Path, count: int = LONG_REQUESTS, chars: int = LONG_CHARS, baseline: str | None = None) -> dict:
    """The phase on this checkout and, with `baseline`, on that revision too, one after the other (same text)."""
    cache_dir = scratch / "long-cache"  # the demo voice and model cache, shared by both servers (same build)
    result: dict[str, object] = {"current": long_phase(ROOT, "current", scratch, cache_dir, count, chars)}
    if baseline is not None:
        with baseline_worktree(baseline) as checkout:
            result["baseline"] = {"name": baseline, **long_phase(checkout, "baseline", scratch, cache_dir, count, chars)}
    return result


def _row(label: str, row: dict) -> str:
    return (
        f"| {label} | {row['request']} | {row.get('outcome')} ({row.get('status')}) | {row['idle_before_mb']:,} "
        f"| {row['peak_mb']:,} (+{row['rise_mb']:,}) | {row['idle_after_mb']:,} | {row.get('audio_s', '-')} "
        f"| {row['seconds']:g} |"
    )


def flat_within(rows: list[dict]) -> float | None:
    """The last idle RSS after a request against the first's, as a share (0.1: 10% more); None without rows."""
    if not rows:
        return None
    first, last = rows[0]["idle_after_mb"], rows[-1]["idle_after_mb"]
    return (last - first) / first if first else None


def long_goal_met(run: dict) -> bool:
    """This revision's requests all complete, none rising more than RISE_GOAL_MB, the idle RSS flat within FLAT_GOAL."""
    rows = run["current"]["requests"]
    complete = bool(rows) and all(row.get("outcome") == "complete" for row in rows)
    growth = flat_within(rows)
    return complete and max(row["rise_mb"] for row in rows) <= RISE_GOAL_MB and growth is not None and growth <= FLAT_GOAL


def long_lines(run: dict) -> list[str]:
    """The markdown section of a long-text run: RSS per request, this revision and the baseline's side by side."""
    phases = [("now", run["current"])] + ([("baseline", run["baseline"])] if "baseline" in run else [])
    current = run["current"]
    lines = [
        "## Long texts: memory per request",
        "",
        f"Run {run['when']} on {run['machine']['cpu']} ({run['machine'].get('cpu_flags') or 'no bf16/amx/vnni'}, "
        f"{run['machine']['cores']} cores) with `python -m bench.reliability --only long`: {len(current['requests'])} "
        f"requests in a row of the same {current['chars']:,} characters of English prose to {VOICE} "
        "(`response_format: pcm`, read as fast as the client can); RSS of the server process, MB.",
        "",
        "| revision | request | outcome (status) | idle before | peak during (rise) | idle after | audio s | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, phase in phases:
        title = f"{label} (`{phase['revision']}`)"
        lines += [_row(title, row) for row in phase["requests"]]
    lines.append("")
    for label, phase in phases:
        growth = flat_within(phase["requests"])
        rises = [row["rise_mb"] for row in phase["requests"] if row.get("outcome") == "complete"]
        digits = phase["digits"]
        lines.append(
            f"- {label}: idle RSS after the last request "
            + ("-" if growth is None else f"{growth:+.0%}")
            + " against after the first; largest rise during a request "
            + (f"{max(rises):,} MB" if rises else "-")
            + f'; `"999999999999999 " * 256`: {digits.get("outcome")} (status {digits.get("status")}) '
            f"after {digits.get('seconds')} s (client timeout {DIGITS_TIMEOUT_S} s)."
        )
    lines.append(
        f"- goal (issue 23): a rise of at most {RISE_GOAL_MB} MB per request and the idle RSS within {FLAT_GOAL:.0%} "
        f"of the first request's: {'met' if long_goal_met(run) else 'missed'} by `{current['revision']}`."
    )
    return lines
