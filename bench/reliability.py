"""python -m bench.reliability [--soak-seconds N] [--only PART] [--baseline REV]: overload, storms, attacks, long texts.

Loopback only, bounded in count and time. Writes bench/results/reliability.{json,md}.

1. Soak: more clients than the server has places (WORKERS + QUEUE_SIZE) request speech without pause for
   N seconds. Requests beyond the places wait in the server's first-come-first-served line (MAX_QUEUE_WAIT);
   raw clients count 429s and wait the Retry-After they are given; OpenAI SDK clients rely on the SDK's own
   retries. Every 200 must carry complete audio (the length of the same text served alone), no request may
   hang, and the server's resident memory is sampled throughout. Fairness: requests served per client, and
   the waits in line from the server's own log (`queued_s`).
2. Disconnect storm: many clients start a long text and drop the connection after the first audio. We
   time how long until no synthesis runs, check nothing runs after that, and compare the next request's
   time to first audio with the one measured before the storm.
3. Long texts (bench/memory.py): long requests in a row, the server's RSS per request (idle before, peak during,
   idle after), here and, with `--baseline REV`, at that revision in the same run; and the digits text once.
4. Attack run (its own server, with a rate limit): each attack of bench/attacks.py runs for ATTACK_S
   seconds from its own loopback address while a well-behaved client, from another, requests a sentence
   every PACE_S seconds. Per attack: its requests served (complete audio), refused and failed, and their
   time to first audio against a baseline taken before any attack. The goal: served throughout, with a
   median time to first audio at most TTFA_GOAL_RATIO times the baseline's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import random
import re
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from bench.attacks import ATTACKER, ATTACKS, Attack, Tally
from bench.contenders import OurServer
from bench.haproxy import haproxy_in_front_of
from bench.measure import median, stream_request
from bench.memory import LONG_CHARS, LONG_REQUESTS, long_goal_met, long_lines, long_run
from bench.texts import CONCURRENT, PARAGRAPH, SENTENCE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
#: At most 4 requests in progress, the rest wait in line up to MAX_QUEUE_WAIT (the default): 12 clients overload it.
#: Every client of the soak and the storm connects from 127.0.0.1, standing in for many users, so the per-address
#: caps are off there (MAX_STREAMS_PER_CLIENT counts requests waiting in line too; the attack run keeps the caps).
SETTINGS = {
    "WORKERS": "2",
    "QUEUE_SIZE": "2",
    "MAX_QUEUE_WAIT": "30",
    "MAX_STREAMS_PER_CLIENT": "64",
    "MAX_CONNECTIONS_PER_CLIENT": "0",
}
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


def waits_in_line(log: str) -> list[float]:
    """`queued_s` of every request line in a piece of the server's log: the seconds each waited for its place."""
    return [float(match) for match in re.findall(r" queued_s=([0-9.]+) ", log)]


def soak(base: str, pid: int, seconds: float, expected: dict[str, int], server_log: Callable[[], str]) -> dict[str, object]:
    counts: Counter[str] = Counter()
    served: Counter[str] = Counter()  # requests served with complete audio, per client
    refusals: Counter[str] = Counter()  # the raw clients' 429s, by what the message says
    lock = threading.Lock()
    log_before = len(server_log())
    rss: list[tuple[float, float]] = []
    stop_at = time.monotonic() + seconds
    started = time.monotonic()

    def note(outcome: str, client: str = "", refusal: str = "") -> None:
        with lock:
            counts[outcome] += 1
            if outcome in ("accepted", "sdk_accepted"):
                served[client] += 1
            if refusal:
                refusals[refusal] += 1

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
                message = response.json()["error"]["message"]
                note("rejected_429", refusal="waited in line too long" if "waited" in message else "line too long at arrival")
                time.sleep(float(response.headers.get("retry-after", "1")))
            elif response.status_code == 200 and len(response.content) == expected[text]:
                note("accepted", f"raw-{seed}")
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
            note("sdk_accepted" if len(audio) == expected[text] else "sdk_failed", f"sdk-{seed - 100}")

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
    time.sleep(0.5)  # each request's log line follows its last byte
    piece = server_log()[log_before:]
    waits = sorted(waits_in_line(piece))
    clients = [f"raw-{index}" for index in range(RAW_CLIENTS)] + [f"sdk-{index}" for index in range(SDK_CLIENTS)]
    return {
        "seconds": seconds,
        "raw_clients": RAW_CLIENTS,
        "sdk_clients": SDK_CLIENTS,
        "counts": dict(counts),
        "served_per_client": {client: served[client] for client in clients},
        "raw_refusals": dict(refusals),
        "server_429s": len(re.findall(r" status=429 ", piece)),
        "waits_in_line_s": {
            "requests": len(waits),
            "waited": sum(wait > 0 for wait in waits),
            "median": round(median(waits) or 0.0, 2),
            "p90": round(waits[int(0.9 * (len(waits) - 1))], 2) if waits else 0.0,
            "max": round(waits[-1], 2) if waits else 0.0,
        },
        "rss_mb": rss,
    }


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


# Attack run --------------------------------------------------------------------------------------------

VICTIM = "127.0.0.2"  # the well-behaved client's source address; the attacker's is bench.attacks.ATTACKER
#: The well-behaved client (one request every PACE_S) stays under the rate limit; an attacker's budget
#: (12 at once, one more every 5 s) is too small to fill the server, unless spoofing multiplies it.
ATTACK_SETTINGS = {"RATE_LIMIT_PER_MINUTE": "12"}
#: What makes the server trust the proxy of the spoofing attack, and only it, for the client address.
PROXY_SETTINGS = {"TRUSTED_PROXIES": "127.0.0.1", "PROXY_HOPS": "1"}
ATTACK_S = 30  # each attack, from its start to its stop
RAMP_S = 3  # the attack's head start before the well-behaved client's first request
#: The well-behaved client starts a request every PACE_S seconds, refused or not: a refusal's Retry-After
#: (up to 30 s for a full queue) would leave one figure per attack, and it never goes over its rate limit.
PACE_S = 6.0
BASELINE_REQUESTS = 5
VICTIM_TIMEOUT_S = 30  # a well-behaved request with no data for this long has failed
TTFA_GOAL_RATIO = 2.0
QUIET_TIMEOUT_S = 120


@dataclass(frozen=True)
class Outcome:
    """One well-behaved request. kind: served (200, complete audio), refused (another status) or failed."""

    kind: str
    ttfa_s: float | None = None
    detail: str = ""  # the refusal's status and error code, or what failed


def well_behaved_request(base: str, expected_bytes: int) -> Outcome:
    """A sentence streamed from VICTIM on a fresh connection, as a new listener would ask for it."""
    started = time.perf_counter()
    transport = httpx.HTTPTransport(local_address=VICTIM)
    payload = {"model": "demo", "input": SENTENCE}
    try:
        with (
            httpx.Client(transport=transport, timeout=VICTIM_TIMEOUT_S) as client,
            client.stream("POST", f"{base}/v1/audio/speech", json=payload) as response,
        ):
            if response.status_code != 200:
                response.read()
                try:
                    error = response.json()["error"]
                    reason = f"{error['code']}: {error['message'].partition(';')[0]}"  # QueueFull, RateLimited share a code
                except (ValueError, KeyError, TypeError, AttributeError):
                    reason = "no error body"
                return Outcome("refused", detail=f"{response.status_code} {reason}")
            received, ttfa = 0, None
            for chunk in response.iter_raw():
                received += len(chunk)
                if ttfa is None and received > OurServer.header_bytes:
                    ttfa = time.perf_counter() - started
    except httpx.TimeoutException:
        return Outcome("failed", detail=f"no data for {VICTIM_TIMEOUT_S} s")
    except httpx.HTTPError as error:
        return Outcome("failed", detail=type(error).__name__)
    if received != expected_bytes:
        return Outcome("failed", ttfa, f"incomplete audio ({received} of {expected_bytes} bytes)")
    return Outcome("served", ttfa)


def well_behaved(base: str, expected_bytes: int, *, until: float = float("inf"), count: int = 10**9) -> list[Outcome]:
    """Requests one after another, one every PACE_S (or as soon as the previous ends), until `until` or `count`."""
    outcomes: list[Outcome] = []
    while time.monotonic() < until and len(outcomes) < count:
        started = time.monotonic()
        outcomes.append(well_behaved_request(base, expected_bytes))
        time.sleep(max(0.0, min(started + PACE_S, until) - time.monotonic()))
    return outcomes


def summarize(outcomes: list[Outcome], baseline_ttfa_s: float) -> dict[str, object]:
    """The well-behaved client's figures during one attack, and whether they meet the goal."""
    ttfas = [outcome.ttfa_s for outcome in outcomes if outcome.kind == "served" and outcome.ttfa_s is not None]
    refusals = Counter(outcome.detail for outcome in outcomes if outcome.kind == "refused")
    failures = Counter(outcome.detail for outcome in outcomes if outcome.kind == "failed")
    ttfa_median = median(ttfas)
    ratio = None if ttfa_median is None else ttfa_median / baseline_ttfa_s
    served_throughout = bool(ttfas) and not refusals and not failures
    return {
        "requests": len(outcomes),
        "served": len(ttfas),
        "refused": sum(refusals.values()),
        "failed": sum(failures.values()),
        "refusals": dict(refusals),
        "failures": dict(failures),
        "ttfa_median_s": None if ttfa_median is None else round(ttfa_median, 3),
        "ttfa_max_s": round(max(ttfas), 3) if ttfas else None,
        "ttfa_ratio": None if ratio is None else round(ratio, 2),
        "goal_met": served_throughout and ratio is not None and ratio <= TTFA_GOAL_RATIO,
    }


#: A reverse proxy in front of a backend base URL that appends the connecting peer to X-Forwarded-For;
#: entering it yields the proxy's base URL, leaving it stops the proxy. The server trusts it through
#: PROXY_SETTINGS.
ProxyLauncher = Callable[[str], AbstractContextManager[str]]


def through_haproxy(backend: str) -> AbstractContextManager[str]:
    """HAProxy with `option forwardfor` (bench/haproxy.py): a real proxy, as a Space has in front."""
    return haproxy_in_front_of(int(backend.rsplit(":", 1)[1]))


def server_connections(port: int) -> int:
    """Established TCP connections on the server's side of `port` (IPv4 loopback), from /proc/net/tcp."""
    local = f":{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if (fields := line.split())[1].endswith(local) and fields[3] == "01")


class ServerWatch:
    """The server's resident memory and open connections, sampled twice a second while an attack runs."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.peak_rss_mb = self.peak_connections = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(self.pid))
            except (OSError, RuntimeError):
                return  # the server is gone; the run reports it
            self.peak_connections = max(self.peak_connections, server_connections(self.port))

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_quiet(base: str, port: int) -> float:
    """Seconds until the server holds no connection and runs no synthesis: the next attack starts clean."""
    started = time.monotonic()
    while server_connections(port) > 0:
        if time.monotonic() - started > QUIET_TIMEOUT_S:
            raise RuntimeError(f"{server_connections(port)} connections still open after {QUIET_TIMEOUT_S} s")
        time.sleep(0.1)
    wait_idle(base, QUIET_TIMEOUT_S)
    return time.monotonic() - started


def run_attack(attack: Attack, base: str, pid: int, expected_bytes: int, baseline_ttfa_s: float, proxy: ProxyLauncher) -> dict:
    """One attack for ATTACK_S with the well-behaved client requesting throughout; then stopped, and the server quiet."""
    port = int(base.rsplit(":", 1)[1])
    stop, tally = threading.Event(), Tally()
    with proxy(base) if attack.via_proxy else nullcontext(base) as front, ServerWatch(pid, port) as watch:
        started = time.monotonic()
        attacker = threading.Thread(target=attack.run, args=(front, stop, tally), daemon=True)
        attacker.start()
        time.sleep(RAMP_S)
        outcomes = well_behaved(front, expected_bytes, until=started + ATTACK_S)
        stop.set()
        attacker.join(timeout=60)
    result: dict[str, object] = {
        "attack": attack.name,
        "what": attack.what,
        "via_proxy": attack.via_proxy,
        **summarize(outcomes, baseline_ttfa_s),
        "attacker": tally.figures(),
        "attacker_stopped": not attacker.is_alive(),
        "server_peak_rss_mb": round(watch.peak_rss_mb, 1),
        "server_peak_connections": int(watch.peak_connections),
    }
    try:
        result["quiet_after_s"] = round(wait_quiet(base, port), 2)
    except (RuntimeError, httpx.HTTPError) as error:
        result["quiet_after_s"], result["not_quiet"] = None, str(error)
        result["goal_met"] = False
    return result


def attack_run(voice_dir: Path, genie_data: Path, scratch: Path, proxy: ProxyLauncher) -> dict[str, object]:
    """One server with ATTACK_SETTINGS and PROXY_SETTINGS; a baseline, then every attack in turn."""
    settings = {**ATTACK_SETTINGS, **PROXY_SETTINGS}
    running = OurServer(voice_dir, genie_data, scratch, name="attack").start(1, settings)
    try:
        base = running.base_url
        expected = len(httpx.post(f"{base}/v1/audio/speech", json={"model": "demo", "input": SENTENCE}, timeout=120).content)
        baseline = well_behaved(base, expected, count=BASELINE_REQUESTS)
        ttfas = [outcome.ttfa_s for outcome in baseline if outcome.kind == "served" and outcome.ttfa_s is not None]
        if len(ttfas) < BASELINE_REQUESTS:
            raise RuntimeError(f"the baseline was not served: {baseline}")
        baseline_ttfa = median(ttfas)
        assert baseline_ttfa is not None
        print(f"attack run: baseline TTFA {baseline_ttfa:.3f} s", flush=True)
        attacks = []
        for attack in ATTACKS:
            print(f"attack: {attack.name} for {ATTACK_S} s ...", flush=True)
            attacks.append(run_attack(attack, base, running.process.pid, expected, baseline_ttfa, proxy))
            print(json.dumps(attacks[-1], ensure_ascii=False), flush=True)
            if running.process.poll() is not None:
                raise RuntimeError(f"the server exited with {running.process.returncode} during {attack.name}")
    finally:
        running.stop()
    from bench.run import machine

    return {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "settings": settings,
        "victim": VICTIM,
        "attacker": ATTACKER,
        "attack_s": ATTACK_S,
        "pace_s": PACE_S,
        "baseline": {"requests": len(baseline), "ttfa_median_s": round(baseline_ttfa, 3), "ttfa_max_s": round(max(ttfas), 3)},
        "attacks": attacks,
    }


def attack_lines(run: dict) -> list[str]:
    """The attack run's section of reliability.md."""
    baseline = run["baseline"]
    lines = [
        f"## Attack run: a well-behaved client asks for a sentence every {run['pace_s']:.0f} s while each attack runs "
        f"for {run['attack_s']} s",
        "",
        f"Run {run['when']} on {json.dumps(run['machine'])} with `python -m bench.reliability --only attack`.",
        f"Server settings: {', '.join(f'{k}={v}' for k, v in run['settings'].items())}, the rest default. "
        f"The well-behaved client connects from {run['victim']}, a new connection per request; the attacker from "
        f"{run['attacker']}. Its baseline, before any attack: {baseline['requests']} requests, time to first audio "
        f"{baseline['ttfa_median_s']:.3f} s median, {baseline['ttfa_max_s']:.3f} s at most.",
        "",
        "| attack | served | refused | failed | TTFA median / max s | × baseline | goal met |",
        "|---|---|---|---|---|---|---|",
    ]
    for attack in run["attacks"]:
        ttfa = "-" if attack["ttfa_median_s"] is None else f"{attack['ttfa_median_s']:.3f} / {attack['ttfa_max_s']:.3f}"
        ratio = "-" if attack["ttfa_ratio"] is None else f"{attack['ttfa_ratio']:.2f}"
        lines.append(
            f"| {attack['attack']} | {attack['served']} | {attack['refused']} | {attack['failed']} | {ttfa} | {ratio} "
            f"| {'yes' if attack['goal_met'] else 'no'} |"
        )
    lines += [
        "",
        f"Goal: every request served with complete audio (none refused or failed), and a median time to first audio "
        f"at most {TTFA_GOAL_RATIO:g}× the baseline's; the server must also be quiet (no connection, no synthesis) "
        "after each attack.",
        "",
    ]
    for attack in run["attacks"]:
        quiet = (
            f"quiet {attack['quiet_after_s']} s after the attack stopped"
            if attack["quiet_after_s"] is not None
            else f"NOT quiet after the attack: {attack['not_quiet']}"
        )
        lines += [
            f"- **{attack['attack']}**: {attack['what']}.",
            f"  Well-behaved client refused: {json.dumps(attack['refusals']) if attack['refusals'] else 'never'}; "
            f"failed: {json.dumps(attack['failures']) if attack['failures'] else 'never'}.",
            f"  Attacker: {json.dumps(attack['attacker']['counts'], ensure_ascii=False)}"
            + (f", {attack['attacker']['peak_sockets']} sockets held at most" if attack["attacker"]["peak_sockets"] else "")
            + ("" if attack["attacker_stopped"] else " (DID NOT STOP)")
            + ".",
            f"  Server: {attack['server_peak_rss_mb']:.0f} MB resident and {attack['server_peak_connections']} "
            f"connections at most; {quiet}.",
        ]
    return [*lines, ""]


def soak_and_storm_lines(result: dict) -> list[str]:
    soak_counts = result["soak"]["counts"]
    rss = result["soak"]["rss_mb"]
    storm_result = result["storm"]
    return [
        f"Run {result['when']} on {json.dumps(result['machine'])} "
        f"with `python -m bench.reliability --soak-seconds {result['soak']['seconds']:.0f}`.",
        f"Server settings: {', '.join(f'{k}={v}' for k, v in SETTINGS.items())} "
        "(4 requests in progress at most; more wait in line).",
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
        "`accepted`: 200 with exactly the audio length of the same text served alone. A request that finds the 4 places",
        "taken waits for one in the server's first-come-first-served line, no response sent yet, if its expected wait",
        "(the requests ahead of it + 1, times the measured interval between places freeing) is at most MAX_QUEUE_WAIT;",
        "otherwise, or after waiting that long, it gets 429 with Retry-After = the expected wait. `rejected_429`: the raw",
        "client then slept the Retry-After it was given. SDK clients (max_retries=8) count a request once, however",
        "many 429s the SDK retried through.",
        *(fairness_lines(result["soak"]) if "served_per_client" in result["soak"] else []),
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
    ]


def fairness_lines(soak_result: dict) -> list[str]:
    """Who was served how often, and how long requests waited in line: overload spread over every client."""
    served = soak_result["served_per_client"]
    waits = soak_result["waits_in_line_s"]
    refusals = ", ".join(f"{count} {reason}" for reason, count in sorted(soak_result["raw_refusals"].items())) or "none"
    return [
        "",
        "Fairness:",
        "",
        "| client | " + " | ".join(served) + " |",
        "|---|" + "---|" * len(served),
        "| served | " + " | ".join(str(count) for count in served.values()) + " |",
        "",
        f"- requests served: {min(served.values())} to {max(served.values())} per client",
        f"- wait in line (the server's `queued_s`, {waits['requests']} requests, {waits['waited']} of them waited): "
        f"median {waits['median']} s, 90th percentile {waits['p90']} s, at most {waits['max']} s",
        f"- 429s answered by the server: {soak_result['server_429s']} (the raw clients': {refusals})",
    ]


def markdown(result: dict) -> str:
    """Each part that has figures (a run with --only keeps the other parts' figures from the previous run)."""
    lines = [
        "# Reliability figures",
        "",
        *(soak_and_storm_lines(result) if "soak" in result else []),
        *(attack_lines(result["attack"]) if "attack" in result else []),
        *(long_lines(result["long"]) + [""] if "long" in result else []),
        "## Fuzzing (the latest test run's figures in tests/output/, copied by `--report-only`)",
        "",
        "```json",
        json.dumps(result["fuzz"], indent=2, ensure_ascii=False) if result["fuzz"] else "(none: run the tests first)",
        "```",
        "",
    ]
    return "\n".join(lines)


def soak_and_storm(voice_dir: Path, genie_data: Path, scratch: Path, soak_seconds: float) -> dict[str, object]:
    from bench.run import machine

    running = OurServer(voice_dir, genie_data, scratch).start(1, SETTINGS)
    try:
        base = running.base_url
        expected = expected_bytes(base)
        print(f"soak for {soak_seconds:.0f} s ...", flush=True)
        soak_result = soak(base, running.process.pid, soak_seconds, expected, running.log)
        print(json.dumps(soak_result["counts"]), flush=True)
        wait_idle(base)
        print("disconnect storm ...", flush=True)
        storm_result = storm(base)
        print(json.dumps(storm_result), flush=True)
    finally:
        running.stop()
    return {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "soak": soak_result,
        "storm": storm_result,
    }


def long_texts(scratch: Path, count: int, chars: int, baseline: str | None) -> dict[str, object]:
    from bench.run import machine

    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {"when": when, "machine": machine(), **long_run(scratch, count, chars, baseline)}


def broken(result: dict) -> bool:
    """A hung request, synthesis after the storm went idle, or an attack whose goal was missed."""
    hung = "soak" in result and (result["soak"]["counts"].get("hung", 0) + result["storm"]["jobs_in_3_s_after_idle"]) > 0
    missed = "attack" in result and not all(attack["goal_met"] for attack in result["attack"]["attacks"])
    return hung or missed or ("long" in result and not long_goal_met(result["long"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-seconds", type=float, default=180)
    parser.add_argument(
        "--only",
        choices=("soak-and-storm", "attack", "long"),
        help="run this part only; the other part's figures are kept from the previous run's reliability.json",
    )
    parser.add_argument("--baseline", metavar="REV", help="long texts: also run that git revision's server, same text")
    parser.add_argument(
        "--long-requests", type=int, default=LONG_REQUESTS, help=f"long texts: how many (default {LONG_REQUESTS})"
    )
    parser.add_argument("--long-chars", type=int, default=LONG_CHARS, help=f"long texts: characters (default {LONG_CHARS})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: bench/results)")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite reliability.md from reliability.json and the latest fuzz figures"
    )
    args = parser.parse_args(argv)
    json_path, md_path = args.out / "reliability.json", args.out / "reliability.md"
    if args.report_only:
        result = json.loads(json_path.read_text())
        result["fuzz"] = {**result.get("fuzz", {}), **fuzz_figures()}
        json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        md_path.write_text(markdown(result))
        return 0
    if args.only in (None, "attack") and shutil.which("haproxy") is None:
        parser.error("the attack run needs haproxy for its spoofed X-Forwarded-For attack (apt-get install haproxy)")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # genie_tts's import configures INFO logging
    logging.getLogger("openai").setLevel(logging.WARNING)
    from engine.tools.demo import ensure_demo
    from engine.voices.demo_voices import BUILD_VERSION

    voice_dir, genie_data = ensure_demo(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}")
    scratch = ROOT / ".cache" / "bench" / "reliability"
    scratch.mkdir(parents=True, exist_ok=True)
    result = json.loads(json_path.read_text()) if args.only and json_path.exists() else {}
    if args.only in (None, "soak-and-storm"):
        result.update(soak_and_storm(voice_dir, genie_data, scratch, args.soak_seconds))
    if args.only in (None, "attack"):
        result["attack"] = attack_run(voice_dir, genie_data, scratch, through_haproxy)
    if args.only in (None, "long"):
        result["long"] = long_texts(scratch, args.long_requests, args.long_chars, args.baseline)
    result["fuzz"] = {**result.get("fuzz", {}), **fuzz_figures()}  # a file not written since keeps its figures
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(result))
    print(md_path.read_text())
    return 1 if broken(result) else 0


if __name__ == "__main__":
    raise SystemExit(main())
