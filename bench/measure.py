"""One streamed request, timed byte by byte, and the figures derived from it."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import httpx

BYTES_PER_SECOND = 32000 * 2  # 16-bit mono at 32 kHz: every contender's output


@dataclass
class Sample:
    """One request: when each chunk of audio arrived, relative to sending the request."""

    ok: bool
    status: int = 0
    ttfa_s: float | None = None  # first audio byte, after any header
    total_s: float = 0.0
    audio_bytes: int = 0
    riff: bool = False
    hung: bool = False
    error: str = ""
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds, audio bytes so far)

    @property
    def audio_s(self) -> float:
        return self.audio_bytes / BYTES_PER_SECOND

    @property
    def rtf(self) -> float | None:
        return self.total_s / self.audio_s if self.audio_s else None

    @property
    def stall_s(self) -> float:
        return playback_stall(self.arrivals)

    @property
    def max_gap_s(self) -> float:
        return max_gap(self.arrivals)


def playback_stall(arrivals: list[tuple[float, int]]) -> float:
    """Seconds a listener who starts playing at the first audio byte spends waiting for data later.

    The bytes of a chunk start at audio position `before / rate`; playing without pauses they are
    needed at `t0 + before / rate`. The total stall is the worst lateness over all chunks.
    """
    if not arrivals:
        return 0.0
    t0 = arrivals[0][0]
    worst, before = 0.0, arrivals[0][1]
    for arrived, total in arrivals[1:]:
        worst = max(worst, arrived - t0 - before / BYTES_PER_SECOND)
        before = total
    return max(0.0, worst)


def max_gap(arrivals: list[tuple[float, int]]) -> float:
    """The longest wait between two body chunks after the first audio byte, by the client's receive times.

    Unlike the stall, this ignores how much audio is buffered: a client that gives up after some seconds
    without bytes (pipecat ends a TTS turn after 3 s) sees exactly this.
    """
    times = [arrived for arrived, _ in arrivals]
    return max((later - earlier for earlier, later in zip(times, times[1:], strict=False)), default=0.0)


def stream_request(url: str, payload: dict, header_bytes: int, timeout_s: float, headers: dict | None = None) -> Sample:
    """POST `payload` and read the streamed body, timing the arrival of every chunk of audio."""
    started = time.perf_counter()
    received = 0
    sample = Sample(ok=False)
    deadline = started + timeout_s
    try:
        with httpx.stream("POST", url, json=payload, headers=headers, timeout=httpx.Timeout(timeout_s)) as response:
            sample.status = response.status_code
            head = b""
            for chunk in response.iter_raw():
                now = time.perf_counter() - started
                if len(head) < 4:
                    head += chunk[:4]
                received += len(chunk)
                audio = max(0, received - header_bytes)
                if audio > 0:
                    if sample.ttfa_s is None:
                        sample.ttfa_s = now
                    sample.arrivals.append((now, audio))
                if time.perf_counter() > deadline:
                    sample.hung, sample.error = True, f"still streaming after {timeout_s:.0f} s"
                    return sample
            sample.riff = head[:4] == b"RIFF"
            sample.ok = response.status_code == 200 and received > header_bytes
    except httpx.TimeoutException:
        sample.hung, sample.error = True, f"no data for {timeout_s:.0f} s"
    except httpx.HTTPError as error:
        sample.error = f"{type(error).__name__}: {error}"
    finally:
        sample.total_s = time.perf_counter() - started
        sample.audio_bytes = max(0, received - header_bytes)
    return sample


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: list[float]) -> list[float] | None:
    """[min, max] of the repeats behind a median: how noisy the figure is."""
    return [min(values), max(values)] if values else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: with few samples, the honest choice is an observed value."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
