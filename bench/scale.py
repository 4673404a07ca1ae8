"""python -m bench.scale [--quick]: three replicas behind HAProxy (deploy/haproxy/haproxy.cfg), with figures.

Loopback only. Writes bench/results/scale.{json,md}.

1. Spread and streaming: requests (sentences and paragraphs) through the balancer; how many each replica served
   (HAProxy's per-server session counts, the replica named in each response, each replica's synthesis jobs),
   and whether the first audio arrived while the replica was still synthesising (streaming passes through).
2. Kill: SIGKILL one replica while streams run on all three. Its streams must break visibly (an exception from
   the client, never a clean short body), the others complete; requests sent from the kill on must all succeed.
3. Rolling restart: raw httpx clients and OpenAI SDK clients (default retries) send without pause while each
   replica in turn gets SIGTERM, exits, starts again and is back in rotation. No request that had not started
   streaming may be lost.
4. Time to first audio through the balancer against direct to one replica, the same texts interleaved.

The scenarios are functions the e2e test (tests/test_scale_e2e.py) runs too, in a smaller form.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import openai

from bench.haproxy import REPLICA_HEADER, RunningBalancer, balancer, replica_name
from bench.measure import percentile
from bench.texts import CONCURRENT, PARAGRAPH, SENTENCE, SHORT
from tests.server_process import ROOT, ServerProcess, free_port, start_server

RESULTS = Path(__file__).resolve().parent / "results"
#: Every client of the benchmark connects from 127.0.0.1, standing in for many users, and the replicas trust the
#: balancer's X-Forwarded-For (as the docs recommend), so the per-client stream cap is raised. DRAIN_SECONDS: the
#: time a replica keeps serving after SIGTERM while its /health says "draining" (servers without it ignore it).
SETTINGS = {"TRUSTED_PROXIES": "127.0.0.1", "MAX_STREAMS_PER_CLIENT": "32", "DRAIN_SECONDS": "3", "DEMO_VOICES": "demo"}
REPLICAS = 3
REQUEST_TIMEOUT_S = 180
HEADER_BYTES = 44  # our WAV header
MIN_AFTER_KILL = 3

#: Starts replica `index` on `port`: (index, port) -> a running server.
Starter = Callable[[int, int], ServerProcess]


@dataclass
class Result:
    """One request as the client saw it.

    outcome: complete (200, the exact audio length), broken_stream (200, then an error before the end),
    short_body (200 and a clean end with too few bytes: must never happen), refused (no connection),
    no_response (connected, no response), status_429, status_5xx, status_other, timeout."""

    outcome: str = ""
    status: int = 0
    replica: str = ""
    started: bool = False  # the response head arrived
    ttfa_s: float | None = None
    total_s: float = 0.0
    body_bytes: int = 0
    detail: str = ""
    sent_at: float = 0.0  # time.monotonic() at sending


def speak(base: str, text: str, expected: int | None, on_audio: Callable[[Result], None] | None = None) -> Result:
    """POST `text` on a new connection and read the stream; `on_audio` is called once, at the first audio bytes."""
    result = Result(sent_at=time.monotonic())
    started = time.perf_counter()
    try:
        with (
            httpx.Client(timeout=REQUEST_TIMEOUT_S) as client,
            client.stream("POST", f"{base}/v1/audio/speech", json={"model": "demo", "input": text}) as response,
        ):
            result.started, result.status = True, response.status_code
            result.replica = response.headers.get(REPLICA_HEADER, "")
            if response.status_code != 200:
                response.read()
                kind = "429" if response.status_code == 429 else "5xx" if response.status_code >= 500 else "other"
                result.outcome, result.detail = f"status_{kind}", response.text[:200]
                return result
            for chunk in response.iter_raw():
                result.body_bytes += len(chunk)
                if result.ttfa_s is None and result.body_bytes > HEADER_BYTES:
                    result.ttfa_s = time.perf_counter() - started
                    if on_audio is not None:
                        on_audio(result)
    except httpx.ConnectError as error:
        result.outcome, result.detail = "refused", str(error)
    except httpx.TimeoutException as error:
        result.outcome, result.detail = "timeout", type(error).__name__
    except httpx.HTTPError as error:
        result.outcome = "broken_stream" if result.started else "no_response"
        result.detail = f"{type(error).__name__}: {error}"
    else:
        result.outcome = "complete" if expected is None or result.body_bytes == expected else "short_body"
        if result.outcome == "short_body":
            result.detail = f"{result.body_bytes} of {expected} bytes"
    finally:
        result.total_s = time.perf_counter() - started
    return result


class Replicas:
    """REPLICAS server processes, each on its own fixed port, that can be killed, stopped and started again."""

    def __init__(self, starter: Starter, count: int = REPLICAS) -> None:
        self.starter = starter
        self.ports = [free_port() for _ in range(count)]
        self.servers: list[ServerProcess | None] = [None] * count

    def start_all(self) -> None:
        """All at once (loading the voice is most of the time); if one fails, those started are stopped."""
        with ThreadPoolExecutor(len(self.ports)) as pool:
            futures = [pool.submit(self.start, index) for index in range(len(self.ports))]
        try:
            for future in futures:
                future.result()
        except Exception:
            self.stop_all()
            raise

    def start(self, index: int) -> ServerProcess:
        self.servers[index] = server = self.starter(index, self.ports[index])
        return server

    def server(self, index: int) -> ServerProcess:
        server = self.servers[index]
        if server is None:
            raise RuntimeError(f"{replica_name(index)} is not running")
        return server

    def index_of(self, name: str) -> int:
        return int(name.removeprefix("replica")) - 1

    def kill(self, index: int) -> None:
        process = self.server(index).process
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.servers[index] = None

    def terminate(self, index: int, timeout: float = 120) -> float:
        """SIGTERM, as an orchestrator stops a replica; seconds until the process exited."""
        process = self.server(index).process
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"{replica_name(index)} did not exit within {timeout} s of SIGTERM") from None
        self.servers[index] = None
        return time.monotonic() - started

    def jobs_run(self) -> list[int]:
        return [self.server(index).health()["synthesis"]["jobs_run"] for index in range(len(self.ports))]

    def stop_all(self) -> None:
        for index, server in enumerate(self.servers):
            if server is not None:
                server.stop()
                self.servers[index] = None


def wait_status(front: RunningBalancer, name: str, status: str, timeout: float = 60) -> float:
    """Seconds until HAProxy reports replica `name` in `status` (UP, DOWN, ...; a check in progress adds " 1/2")."""
    started = time.monotonic()
    while (current := front.replica_stats()[name]["status"]).split()[0] != status:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{name} still {current!r} after {timeout} s, not {status}")
        time.sleep(0.05)
    return time.monotonic() - started


def sessions(front: RunningBalancer) -> dict[str, int]:
    return {name: int(stats["stot"]) for name, stats in sorted(front.replica_stats().items())}


def expected_lengths(base: str, texts: Sequence[str], measured: dict[str, Result] | None = None) -> dict[str, int]:
    """Body bytes of each text served alone: the demo voice's length rule makes them exact. `measured` receives
    each request's figures."""
    lengths = {}
    for text in dict.fromkeys(texts):
        result = speak(base, text, None)
        if result.outcome != "complete":
            raise RuntimeError(f"could not measure {text[:20]!r}: {result}")
        lengths[text] = result.body_bytes
        if measured is not None:
            measured[text] = result
    return lengths


# 1. Spread and streaming --------------------------------------------------------------------------------


def spread(front: RunningBalancer, replicas: Replicas, texts: Sequence[str], expected: dict[str, int], clients: int) -> dict:
    """`texts` through the balancer, `clients` at a time; per replica: sessions, responses, synthesis jobs."""
    sessions_before, jobs_before = sessions(front), replicas.jobs_run()
    still_synthesising: list[bool] = []

    def check_replica(result: Result) -> None:
        # At the first audio bytes the client got through the balancer, is the replica still at work on it?
        state = replicas.server(replicas.index_of(result.replica)).health()["synthesis"]
        still_synthesising.append(state["active_requests"] > 0)

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda text: speak(front.url, text, expected[text], check_replica), texts))
    sessions_after, jobs_after = sessions(front), replicas.jobs_run()
    paragraphs = [result for text, result in zip(texts, results, strict=True) if text == PARAGRAPH]
    return {
        "requests": len(results),
        "clients": clients,
        "outcomes": dict(Counter(result.outcome for result in results)),
        "haproxy_sessions": {name: sessions_after[name] - sessions_before[name] for name in sessions_after},
        "responses_by_replica": dict(sorted(Counter(result.replica for result in results).items())),
        "synthesis_jobs": {
            replica_name(i): after - before for i, (before, after) in enumerate(zip(jobs_before, jobs_after, strict=True))
        },
        "first_audio_while_replica_synthesising": f"{sum(still_synthesising)} of {len(still_synthesising)}",
        "all_first_audio_while_synthesising": bool(still_synthesising) and all(still_synthesising),
        "paragraph_ttfa_s": [round(result.ttfa_s, 3) for result in paragraphs if result.ttfa_s is not None],
        "paragraph_total_s": [round(result.total_s, 3) for result in paragraphs],
    }


# 2. Kill ----------------------------------------------------------------------------------------------------


def kill_mid_stream(
    front: RunningBalancer,
    replicas: Replicas,
    text: str,
    expected: dict[str, int],
    streams: int,
    after_s: float,
    follow_text: str,
) -> dict:
    """`streams` streams of `text` through the balancer; once each has audio, SIGKILL the replica of the first.

    Then requests of `follow_text` one after another for `after_s` seconds from the kill on (MIN_AFTER_KILL at least)."""
    audio_started = threading.Semaphore(0)
    streaming: list[Result] = []

    def on_audio(result: Result) -> None:
        streaming.append(result)
        audio_started.release()

    with ThreadPoolExecutor(streams) as pool:
        futures = [pool.submit(speak, front.url, text, expected[text], on_audio) for _ in range(streams)]
        for _ in range(streams):
            if not audio_started.acquire(timeout=REQUEST_TIMEOUT_S):
                raise RuntimeError("the streams did not all start")
        victim_name = streaming[0].replica
        victim = replicas.index_of(victim_name)
        replicas.kill(victim)
        killed_at = time.monotonic()
        with ThreadPoolExecutor(1) as watch:
            marked_down = watch.submit(wait_status, front, victim_name, "DOWN", after_s + 30)
            after: list[Result] = []
            while time.monotonic() - killed_at < after_s or len(after) < MIN_AFTER_KILL:
                after.append(speak(front.url, follow_text, expected[follow_text]))
            down_after_s = marked_down.result()
        streams_results = [future.result() for future in futures]
    own = [result for result in streams_results if result.replica == victim_name]
    others = [result for result in streams_results if result.replica != victim_name]
    return {
        "streams": streams,
        "killed": victim_name,
        "its_streams": len(own),
        "its_streams_outcomes": dict(Counter(result.outcome for result in own)),
        "its_streams_errors": sorted({result.detail.split(":")[0] for result in own}),
        "its_streams_bytes": [f"{result.body_bytes} of {expected[text]}" for result in own],
        "other_streams_outcomes": dict(Counter(result.outcome for result in others)),
        "requests_after_kill": len(after),
        "requests_after_kill_outcomes": dict(Counter(result.outcome for result in after)),
        "requests_after_kill_by_replica": dict(sorted(Counter(result.replica for result in after).items())),
        "marked_down_after_s": round(down_after_s, 2),
        "only_its_streams_broke_visibly": bool(own)
        and all(result.outcome == "broken_stream" for result in own)
        and all(result.outcome == "complete" for result in others),
        "none_failed_after_kill": bool(after) and all(result.outcome == "complete" for result in after),
    }


# 3. Rolling restart ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients of the rolling restart saw, by outcome."""

    raw: list[Result] = field(default_factory=list)
    sdk: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def rolling_restart(
    front: RunningBalancer, replicas: Replicas, texts: Sequence[str], expected: dict[str, int], raw_clients: int, sdk_clients: int
) -> dict:
    """Clients send without pause while each replica in turn is stopped (SIGTERM), started and back in rotation."""
    stop, tally = threading.Event(), Tally()

    def raw_client(seed: int) -> None:
        turn = seed
        while not stop.is_set():
            text = texts[turn % len(texts)]
            turn += 1
            result = speak(front.url, text, expected[text])
            with tally.lock:
                tally.raw.append(result)

    def sdk_client(seed: int) -> None:
        client = openai.OpenAI(base_url=f"{front.url}/v1", api_key="unused", timeout=REQUEST_TIMEOUT_S)  # default retries
        turn = seed
        while not stop.is_set():
            text = texts[turn % len(texts)]
            turn += 1
            try:
                audio = client.audio.speech.create(model="demo", voice="alloy", input=text, response_format="wav").content
                outcome = "complete" if len(audio) == expected[text] else "short_body"
            except openai.APIStatusError as error:
                outcome = f"status_{error.status_code}"
            except openai.OpenAIError as error:
                outcome = type(error).__name__
            with tally.lock:
                tally.sdk[outcome] += 1

    threads = [threading.Thread(target=raw_client, args=(index,)) for index in range(raw_clients)]
    threads += [threading.Thread(target=sdk_client, args=(100 + index,)) for index in range(sdk_clients)]
    for thread in threads:
        thread.start()
    steps = []
    try:
        time.sleep(2)
        for index in range(len(replicas.ports)):
            name = replica_name(index)
            exit_s = replicas.terminate(index)
            server = replicas.start(index)
            back_in_rotation_s = wait_status(front, name, "UP")
            steps.append(
                {
                    "replica": name,
                    "exit_after_sigterm_s": round(exit_s, 2),
                    "start_s": round(server.cold_start_s, 2),
                    "up_in_haproxy_after_ready_s": round(back_in_rotation_s, 2),
                }
            )
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 30)
    raw = Counter(result.outcome for result in tally.raw)
    lost = [result for result in tally.raw if result.outcome != "complete" and not (result.started and result.status == 200)]
    return {
        "raw_clients": raw_clients,
        "sdk_clients": sdk_clients,
        "steps": steps,
        "raw_sent": len(tally.raw),
        "raw_outcomes": dict(raw),
        "raw_lost_before_streaming": len(lost),
        "raw_lost_details": sorted({result.detail[:120] for result in lost}),
        "sdk_sent": sum(tally.sdk.values()),
        "sdk_outcomes": dict(tally.sdk),
        "nothing_lost_before_streaming": not lost and set(tally.sdk) <= {"complete"},
    }


# 4. Time to first audio, balancer vs direct ---------------------------------------------------------------


def ttfa_comparison(front: RunningBalancer, direct: str, texts: Sequence[str], rounds: int, expected: dict[str, int]) -> dict:
    """Each round: every text through the balancer, then direct to one replica, one request at a time."""
    samples: dict[str, list[float]] = {"balancer": [], "direct": []}
    failures = Counter()
    for _ in range(rounds):
        for text in texts:
            for path, base in (("balancer", front.url), ("direct", direct)):
                result = speak(base, text, expected[text])
                if result.outcome == "complete" and result.ttfa_s is not None:
                    samples[path].append(result.ttfa_s)
                else:
                    failures[f"{path}: {result.outcome}"] += 1

    def figures(values: list[float]) -> dict:
        p50, p95 = percentile(values, 50), percentile(values, 95)
        return {"requests": len(values), "p50_s": p50 and round(p50, 3), "p95_s": p95 and round(p95, 3)}

    return {
        "rounds": rounds,
        "texts": len(texts),
        **{path: figures(values) for path, values in samples.items()},
        "failures": dict(failures),
    }


# The run ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How much of each scenario a run does (--quick: a smoke run)."""

    spread_rounds: int  # each round: the CONCURRENT sentences and one paragraph
    spread_clients: int
    kill_streams: int
    kill_after_s: float
    restart_raw_clients: int
    restart_sdk_clients: int
    ttfa_rounds: int


FULL = Plan(
    spread_rounds=1,
    spread_clients=6,
    kill_streams=6,
    kill_after_s=10,
    restart_raw_clients=4,
    restart_sdk_clients=2,
    ttfa_rounds=5,
)
QUICK = Plan(
    spread_rounds=1, spread_clients=3, kill_streams=3, kill_after_s=8, restart_raw_clients=2, restart_sdk_clients=1, ttfa_rounds=2
)
RESTART_TEXTS = [SHORT, SENTENCE, *CONCURRENT[:3]]
KILL_TEXT = SENTENCE + CONCURRENT[2]  # about 10 s of audio: every stream is still running when the kill comes
TTFA_TEXTS = [SHORT, SENTENCE]


def bench_starter(scratch: Path) -> Starter:
    """Replicas as bench/contenders.py starts our server: the demo voice folder, offline, a cache each (kept
    across its restarts, as a container's filesystem is)."""
    from bench.contenders import voice_folders
    from engine.tools.demo import ensure_demo
    from engine.voices.demo_voices import BUILD_VERSION

    voice_dir, genie_data = ensure_demo(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}")
    models = voice_folders(voice_dir, 1, scratch)
    for index in range(REPLICAS):
        shutil.rmtree(scratch / f"cache-{replica_name(index)}", ignore_errors=True)

    def start(index: int, port: int) -> ServerProcess:
        env = {
            "MODELS_DIR": str(models),
            "GENIE_DATA_DIR": str(genie_data),
            "GENIE_DOWNLOAD": "0",
            "DEMO": "0",
            "CACHE_DIR": str(scratch / f"cache-{replica_name(index)}"),
            **SETTINGS,
        }
        return start_server(scratch / f"{replica_name(index)}.log", env, port=port)

    return start


def run(plan: Plan, scratch: Path) -> dict:
    replicas = Replicas(bench_starter(scratch))
    print(f"starting {REPLICAS} replicas ...", flush=True)
    try:
        replicas.start_all()
        with balancer(replicas.ports) as front:
            for index in range(REPLICAS):
                wait_status(front, replica_name(index), "UP")
            direct = replicas.server(0).base_url
            texts = [*CONCURRENT, PARAGRAPH, SHORT, SENTENCE, KILL_TEXT]
            alone: dict[str, Result] = {}
            expected = expected_lengths(direct, texts, alone)
            result: dict[str, object] = {
                "paragraph_direct_alone": {
                    "ttfa_s": round(alone[PARAGRAPH].ttfa_s or 0, 3),
                    "total_s": round(alone[PARAGRAPH].total_s, 3),
                }
            }
            print("spread and streaming ...", flush=True)
            spread_texts = [*CONCURRENT, PARAGRAPH] * plan.spread_rounds
            result["spread"] = spread(front, replicas, spread_texts, expected, plan.spread_clients)
            print(json.dumps(result["spread"]), flush=True)
            print("kill one replica mid-stream ...", flush=True)
            result["kill"] = kill_mid_stream(front, replicas, KILL_TEXT, expected, plan.kill_streams, plan.kill_after_s, SHORT)
            print(json.dumps(result["kill"]), flush=True)
            killed = replicas.index_of(str(result["kill"]["killed"]))
            replicas.start(killed)
            wait_status(front, replica_name(killed), "UP")
            print("rolling restart ...", flush=True)
            result["rolling_restart"] = rolling_restart(
                front, replicas, RESTART_TEXTS, expected, plan.restart_raw_clients, plan.restart_sdk_clients
            )
            print(json.dumps(result["rolling_restart"]), flush=True)
            print("time to first audio, balancer vs direct ...", flush=True)
            result["ttfa"] = ttfa_comparison(front, replicas.server(0).base_url, TTFA_TEXTS, plan.ttfa_rounds, expected)
            print(json.dumps(result["ttfa"]), flush=True)
            result["haproxy_config"] = front.config
    finally:
        replicas.stop_all()
    return result


def verdicts(result: dict) -> dict[str, bool]:
    """The properties the run shows, each true or false."""
    spread_figures = result["spread"]
    return {
        "every replica served requests": all(count > 0 for count in spread_figures["haproxy_sessions"].values())
        and len(spread_figures["haproxy_sessions"]) == REPLICAS,
        "every spread request complete": set(spread_figures["outcomes"]) == {"complete"},
        "first audio arrived while the replica was still synthesising": spread_figures["all_first_audio_while_synthesising"],
        "a killed replica broke only its own streams, visibly": result["kill"]["only_its_streams_broke_visibly"],
        "every request after the kill succeeded": result["kill"]["none_failed_after_kill"],
        "rolling restart: no request lost before streaming": result["rolling_restart"]["nothing_lost_before_streaming"],
    }


def markdown(result: dict) -> str:
    spread_figures, kill, restart, ttfa = result["spread"], result["kill"], result["rolling_restart"], result["ttfa"]
    responses = spread_figures["responses_by_replica"]
    lines = [
        "# Scale: three replicas behind HAProxy",
        "",
        f"Run {result['when']} on {json.dumps(result['machine'])} with `{result['command']}`"
        + (
            f" (1-minute load average {result['load_average'][0]} at the start, {result['load_average'][1]} at the end)."
            if "load_average" in result
            else "."
        ),
        f"{REPLICAS} replicas of `python server.py` on the demo voice, each its own process and loopback port, behind "
        "HAProxy configured by `deploy/haproxy/haproxy.cfg` (only its `bind` and `server` addresses changed, plus a stats "
        f"socket and an `{REPLICA_HEADER}` response header for counting). Replica settings: "
        f"{', '.join(f'{key}={value}' for key, value in result['settings'].items())}, the rest default. "
        "All replicas share the machine's cores, so three replicas here do not serve three times one replica's streams.",
        "",
        "## Properties",
        "",
        "| property | holds |",
        "|---|---|",
        *[f"| {name} | {'yes' if holds else '**NO**'} |" for name, holds in result["verdicts"].items()],
        "",
        f"## Spread and streaming: {spread_figures['requests']} requests, {spread_figures['clients']} at a time",
        "",
        "| replica | HAProxy sessions | responses naming it | synthesis jobs |",
        "|---|---|---|---|",
        *[
            f"| {name} | {count} | {responses.get(name, 0)} | {spread_figures['synthesis_jobs'][name]} |"
            for name, count in spread_figures["haproxy_sessions"].items()
        ],
        "",
        f"Outcomes: {json.dumps(spread_figures['outcomes'])}. The first audio bytes reached the client through the balancer "
        f"while the replica still had the request in progress (its /health, read at that moment) for "
        f"{spread_figures['first_audio_while_replica_synthesising']} requests. Paragraph through the balancer: time to first "
        f"audio {spread_figures['paragraph_ttfa_s']} s, whole stream {spread_figures['paragraph_total_s']} s (with the other "
        f"requests running); direct to one replica, alone, before: {result['paragraph_direct_alone']['ttfa_s']} s and "
        f"{result['paragraph_direct_alone']['total_s']} s.",
        "",
        f"## Kill: SIGKILL {kill['killed']} while {kill['streams']} streams of two sentences run, once each has audio",
        "",
        f"- its streams: {kill['its_streams']}, outcomes {json.dumps(kill['its_streams_outcomes'])} "
        f"(client errors: {', '.join(kill['its_streams_errors'])}; bytes received {', '.join(kill['its_streams_bytes'])})",
        f"- the other replicas' streams: {json.dumps(kill['other_streams_outcomes'])}",
        f"- HAProxy marked {kill['killed']} DOWN {kill['marked_down_after_s']} s after the kill "
        "(a health check every second, 2 failures in a row)",
        f"- requests sent one after another from the kill on: {kill['requests_after_kill']}, outcomes "
        f"{json.dumps(kill['requests_after_kill_outcomes'])}, served by {json.dumps(kill['requests_after_kill_by_replica'])}",
        "",
        "`broken_stream`: the client got the 200 and some audio, then httpx raised (the chunked body ended without its "
        "last chunk); `short_body` (a clean end with too few bytes) would be a silent truncation and never happened "
        "if it is absent from the outcomes.",
        "",
        f"## Rolling restart: {restart['raw_clients']} raw clients and {restart['sdk_clients']} OpenAI SDK clients "
        "(default retries) send without pause",
        "",
        "| replica | exit after SIGTERM s | start s | UP in HAProxy after ready s |",
        "|---|---|---|---|",
        *[
            f"| {step['replica']} | {step['exit_after_sigterm_s']} | {step['start_s']} | {step['up_in_haproxy_after_ready_s']} |"
            for step in restart["steps"]
        ],
        "",
        f"- raw clients: {restart['raw_sent']} requests, outcomes {json.dumps(restart['raw_outcomes'])}; "
        f"lost before streaming (refused, no response, 5xx, 429): {restart['raw_lost_before_streaming']}",
        f"- SDK clients: {restart['sdk_sent']} requests, outcomes {json.dumps(restart['sdk_outcomes'])}",
        "",
        "A `broken_stream` here is a stream its replica cut when it stopped: after SIGTERM a replica serves its streams in "
        "flight for at most SHUTDOWN_TIMEOUT seconds (30 by default). The client saw it fail (never a short file) and "
        "may ask again; a request that had not started streaming is never lost: HAProxy sends it to another replica.",
        "",
        f"## Time to first audio: balancer vs direct ({ttfa['rounds']} rounds of {ttfa['texts']} texts, one request at a time)",
        "",
        "| path | requests | p50 s | p95 s |",
        "|---|---|---|---|",
        *[
            f"| {path} | {ttfa[path]['requests']} | {ttfa[path]['p50_s']} | {ttfa[path]['p95_s']} |"
            for path in ("balancer", "direct")
        ],
        "",
        f"Failures: {json.dumps(ttfa['failures']) if ttfa['failures'] else 'none'}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and clients")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: bench/results)")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("openai").setLevel(logging.WARNING)
    from bench.run import machine

    scratch = ROOT / ".cache" / "bench" / "scale"
    scratch.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()[0]
    result = run(QUICK if args.quick else FULL, scratch)
    result = {
        # Other work on the machine slows every replica alike: the 1-minute load average at the start and the end.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "when": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": "python -m bench.scale" + (" --quick" if args.quick else ""),
        "settings": SETTINGS,
        "plan": asdict(QUICK if args.quick else FULL),
        **result,
    }
    result["verdicts"] = verdicts(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (args.out / "scale.md").write_text(markdown(result))
    print((args.out / "scale.md").read_text())
    return 0 if all(result["verdicts"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
