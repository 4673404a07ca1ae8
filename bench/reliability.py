"""python -m bench.reliability [--soak-seconds N]: load above capacity and a disconnect storm, with figures.

Loopback only, bounded in count and time. Writes bench/results/reliability.{json,md}.

1. Soak: more clients than the server admits (WORKERS + QUEUE_SIZE) request speech without pause for
   N seconds. Raw clients count 429s and wait the Retry-After they are given; OpenAI SDK clients rely on
   the SDK's own retries. Every 200 must carry complete audio (the length of the same text served alone),
   no request may hang, and the server's resident memory is sampled throughout.
2. Disconnect storm: many clients start a long text and drop the connection after the first audio. We
   time how long until no synthesis runs, check nothing runs after that, and compare the next request's
   time to first audio with the one measured before the storm.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import openai

from bench.contenders import OurServer
from bench.measure import median, stream_request
from bench.texts import CONCURRENT, PARAGRAPH, SENTENCE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {"WORKERS": "2", "QUEUE_SIZE": "2"}  # at most 4 requests in progress: 12 clients overload it
RAW_CLIENTS, SDK_CLIENTS = 9, 3
STORM_CLIENTS = 24
REQUEST_TIMEOUT_S = 120


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def health(base: str) -> dict:
    return httpx.get(f"{base}/health", timeout=10).json()


def wait_idle(base: str, timeout_s: float = 120) -> float:
    """Seconds until no request is active and no synthesis job runs."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        synthesis = health(base)["synthesis"]
        if synthesis["active_requests"] == 0 and synthesis["running"] == 0:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"still busy after {timeout_s} s: {health(base)}")


def expected_bytes(base: str) -> dict[str, int]:
    """Audio bytes of each text served alone: the demo voice's length rule makes them exact."""
    return {
        text: len(httpx.post(f"{base}/v1/audio/speech", json={"model": "demo", "input": text}, timeout=120).content)
        for text in CONCURRENT
    }


def soak(base: str, pid: int, seconds: float, expected: dict[str, int]) -> dict[str, object]:
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    rss: list[tuple[float, float]] = []
    stop_at = time.monotonic() + seconds
    started = time.monotonic()

    def note(outcome: str) -> None:
        with lock:
            counts[outcome] += 1

    def raw_client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            text = rng.choice(CONCURRENT)
            note("sent")
            try:
                response = httpx.post(f"{base}/v1/audio/speech", json={"model": "demo", "input": text}, timeout=REQUEST_TIMEOUT_S)
            except httpx.TimeoutException:
                note("hung")
                continue
            except httpx.HTTPError:
                note("failed")
                continue
            if response.status_code == 429:
                note("rejected_429")
                time.sleep(float(response.headers.get("retry-after", "1")))
            elif response.status_code == 200 and len(response.content) == expected[text]:
                note("accepted")
            else:
                note("failed")

    def sdk_client(seed: int) -> None:
        rng = random.Random(seed)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=8, timeout=REQUEST_TIMEOUT_S)
        while time.monotonic() < stop_at:
            text = rng.choice(CONCURRENT)
            note("sdk_sent")
            try:
                audio = client.audio.speech.create(model="demo", voice="alloy", input=text, response_format="wav").content
            except openai.RateLimitError:
                note("sdk_gave_up_429")
                continue
            except openai.APITimeoutError:
                note("hung")
                continue
            except openai.OpenAIError:
                note("sdk_failed")
                continue
            note("sdk_accepted" if len(audio) == expected[text] else "sdk_failed")

    threads = [threading.Thread(target=raw_client, args=(index,)) for index in range(RAW_CLIENTS)]
    threads += [threading.Thread(target=sdk_client, args=(100 + index,)) for index in range(SDK_CLIENTS)]
    for thread in threads:
        thread.start()
    while time.monotonic() < stop_at:
        rss.append((round(time.monotonic() - started, 1), round(rss_mb(pid), 1)))
        time.sleep(2)
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S + 30)
    counts["hung"] += sum(thread.is_alive() for thread in threads)
    rss.append((round(time.monotonic() - started, 1), round(rss_mb(pid), 1)))
    return {"seconds": seconds, "raw_clients": RAW_CLIENTS, "sdk_clients": SDK_CLIENTS, "counts": dict(counts), "rss_mb": rss}


def drop_after_first_audio(base: str, text: str) -> bool:
    """Start a stream, read past the WAV header, then close the socket without a word. False: not a 200."""
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"model": "demo", "input": text}).encode()
    with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT_S) as sock:
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) <= 64:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            received += chunk
        return received.startswith(b"HTTP/1.1 200")


def ttfa(base: str) -> float:
    sample = stream_request(f"{base}/v1/audio/speech", {"model": "demo", "input": SENTENCE}, 44, REQUEST_TIMEOUT_S)
    if sample.ttfa_s is None:
        raise RuntimeError(f"no audio: {sample.error}")
    return sample.ttfa_s


def storm(base: str) -> dict[str, object]:
    before = median([ttfa(base) for _ in range(3)])
    outcomes: list[int] = []  # 429s each client went through before it got audio and dropped

    def impatient_client() -> None:
        refused = 0
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while not drop_after_first_audio(base, PARAGRAPH):
            refused += 1
            if time.monotonic() > deadline:
                return
            time.sleep(0.5)  # impatient: retries at once rather than after Retry-After
        outcomes.append(refused)

    threads = [threading.Thread(target=impatient_client) for _ in range(STORM_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S * 3)
    recover_s = wait_idle(base)
    jobs = health(base)["synthesis"]["jobs_run"]
    time.sleep(3)
    jobs_after_idle = health(base)["synthesis"]["jobs_run"] - jobs
    after = median([ttfa(base) for _ in range(3)])
    return {
        "clients": STORM_CLIENTS,
        "got_audio_then_dropped": len(outcomes),
        "refusals_429_on_the_way": sum(outcomes),
        "time_to_idle_after_last_drop_s": round(recover_s, 2),
        "jobs_in_3_s_after_idle": jobs_after_idle,
        "ttfa_before_s": round(before, 3),
        "ttfa_after_s": round(after, 3),
    }


def fuzz_figures() -> dict[str, object]:
    """What the fuzz tests wrote to tests/output/ in their latest run (a file of JSON lines: its last line)."""
    figures = {}
    for path in sorted((ROOT / "tests" / "output").glob("*fuzz*.json")):
        text = path.read_text()
        try:
            figures[path.name] = json.loads(text)
        except json.JSONDecodeError:
            figures[path.name] = json.loads(text.strip().splitlines()[-1])
    return figures


def markdown(result: dict) -> str:
    soak_counts = result["soak"]["counts"]
    rss = result["soak"]["rss_mb"]
    storm_result = result["storm"]
    lines = [
        "# Reliability figures",
        "",
        f"Run {result['when']} on {json.dumps(result['machine'])} "
        f"with `python -m bench.reliability --soak-seconds {result['soak']['seconds']:.0f}`.",
        f"Server settings: {', '.join(f'{k}={v}' for k, v in SETTINGS.items())} (4 requests in progress at most).",
        "",
        f"## Soak: {RAW_CLIENTS} raw clients and {SDK_CLIENTS} OpenAI SDK clients "
        f"without pause for {result['soak']['seconds']:.0f} s",
        "",
        "| figure | count |",
        "|---|---|",
        *[
            f"| {name} | {soak_counts.get(name, 0)} |"
            for name in (
                "sent",
                "accepted",
                "rejected_429",
                "failed",
                "sdk_sent",
                "sdk_accepted",
                "sdk_gave_up_429",
                "sdk_failed",
                "hung",
            )
        ],
        "",
        "`accepted`: 200 with exactly the audio length of the same text served alone. `rejected_429`: the raw",
        "client then slept the Retry-After it was given. SDK clients (max_retries=8) count a request once, however",
        "many 429s the SDK retried through.",
        "",
        f"Resident memory: {rss[0][1]:.0f} MB at the start, {max(mb for _, mb in rss):.0f} MB at most, "
        f"{rss[-1][1]:.0f} MB at the end.",
        "",
        "| second | RSS MB |",
        "|---|---|",
        *[f"| {second:.0f} | {mb:.0f} |" for second, mb in rss[:: max(1, len(rss) // 12)]],
        "",
        f"## Disconnect storm: {STORM_CLIENTS} clients drop a long text after its first audio",
        "",
        f"- got audio, then dropped: {storm_result['got_audio_then_dropped']} of {STORM_CLIENTS} (each retried every 0.5 s"
        f" through {storm_result['refusals_429_on_the_way']} refusals (429) in all until it was admitted)",
        f"- time until no synthesis runs, after the last client dropped: {storm_result['time_to_idle_after_last_drop_s']} s",
        f"- synthesis jobs run in the 3 s after that (must be 0): {storm_result['jobs_in_3_s_after_idle']}",
        f"- time to first audio of a sentence: {storm_result['ttfa_before_s']} s before the storm, "
        f"{storm_result['ttfa_after_s']} s after",
        "",
        "## Fuzzing (the latest test run's figures in tests/output/, copied by `--report-only`)",
        "",
        "```json",
        json.dumps(result["fuzz"], indent=2, ensure_ascii=False) if result["fuzz"] else "(none: run the tests first)",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-seconds", type=float, default=180)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite reliability.md from reliability.json and the latest fuzz figures"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        result = json.loads((RESULTS / "reliability.json").read_text())
        result["fuzz"] = fuzz_figures()
        (RESULTS / "reliability.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        (RESULTS / "reliability.md").write_text(markdown(result))
        return 0
    logging.getLogger("httpx").setLevel(logging.WARNING)  # genie_tts's import configures INFO logging
    logging.getLogger("openai").setLevel(logging.WARNING)
    from bench.run import machine
    from engine.tools.demo import BUILD_VERSION, ensure_demo

    voice_dir, genie_data = ensure_demo(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}")
    scratch = ROOT / ".cache" / "bench" / "reliability"
    scratch.mkdir(parents=True, exist_ok=True)
    running = OurServer(voice_dir, genie_data, scratch).start(1, SETTINGS)
    try:
        base = running.base_url
        expected = expected_bytes(base)
        print(f"soak for {args.soak_seconds:.0f} s ...", flush=True)
        soak_result = soak(base, running.process.pid, args.soak_seconds, expected)
        print(json.dumps(soak_result["counts"]), flush=True)
        wait_idle(base)
        print("disconnect storm ...", flush=True)
        storm_result = storm(base)
        print(json.dumps(storm_result), flush=True)
    finally:
        running.stop()
    result = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "soak": soak_result,
        "storm": storm_result,
        "fuzz": fuzz_figures(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "reliability.md").write_text(markdown(result))
    print((RESULTS / "reliability.md").read_text())
    broken = soak_result["counts"].get("hung", 0) + storm_result["jobs_in_3_s_after_idle"]
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
