"""Fair scheduling of speech requests: which requests are admitted, and whose synthesis job runs next.

Two jobs, two classes, wired together by `Scheduler`, the one object the server holds:

- `Admission` decides which requests are in progress: a bounded number hold a place, more wait in a line for
  one, the rest are refused (`QueueFull`, with a Retry-After) or, when the server stops, told so (`LineClosed`).
  A request that is admitted holds a `Ticket` until it is released.
- `WorkerSlots` runs the CPU jobs (a segment's G2P, its T2S loop, its vocoder, its encoding) of the requests in
  progress, at most `workers` at once, and gives each freed slot to the job whose request comes first in the
  fairness order.

A request: `Scheduler.join` (a `Place`, at once or in the line; `Place.wait` for its `Ticket`), then
`Scheduler.run` for each of its jobs, then `Scheduler.release` when it is over.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from engine.synthesis.speed import SynthesisSpeed

T = TypeVar("T")


#: The most a refusal asks a client to wait. The OpenAI SDKs honour Retry-After only up to a bound (60 s in
#: older Python SDKs, which otherwise back off for at most 8 s; 120 s in newer ones, which beyond it give up at
#: once): a longer estimate would be ignored or end the client's retries, and is too uncertain anyway.
MAX_RETRY_AFTER_S = 60
#: The duration of a request assumed before any has finished (a sentence on the demo voice takes about 3 s here).
DEFAULT_REQUEST_S = 5.0


def retry_seconds(wait_s: float) -> int:
    """A wait as a Retry-After value: whole seconds, rounded up, at least 1, at most MAX_RETRY_AFTER_S."""
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(wait_s)))


class QueueFull(Exception):
    """No place for this request, and `cause` says why: `server_busy` (every place taken and the line too long,
    or no line), `queue_timeout` (it waited `waited_s` in line without getting a place) or `client_limit`
    (this client has `client_limit` requests in progress or waiting). `retry_after`: seconds to wait."""

    def __init__(
        self,
        retry_after: int,
        client_limit: int | None = None,
        *,
        cause: str = "",
        ahead: int = 0,
        expected_s: float = 0.0,
        waited_s: float = 0.0,
    ) -> None:
        super().__init__(f"server busy, retry after {retry_after} s")
        self.retry_after = retry_after
        self.client_limit = client_limit
        self.cause = cause or ("server_busy" if client_limit is None else "client_limit")
        self.ahead = ahead  # requests waiting in line when it was refused
        self.expected_s = expected_s  # its expected wait, uncapped (server_busy)
        self.waited_s = waited_s  # how long it waited in line (queue_timeout)


class LineClosed(Exception):
    """The server is stopping: a request still waiting for a place will not get one (the caller answers 503)."""


@dataclass(eq=False)
class Ticket:
    """One admitted request: its place in the fairness order and its cancellation flag."""

    arrival: int
    started: float  # when it got its place (time.monotonic)
    client: str = ""
    queued_s: float = 0.0  # how long it waited in line for its place
    streaming: bool = False  # its first audio has been sent
    audio_at: float = 0.0  # when (time.monotonic) its last audio went out
    dry_at: float = 0.0  # when its listener will have played all the audio sent so far
    client_behind: bool = False  # a send of its audio is waiting for the client to read what it was sent
    cancel: threading.Event = field(default_factory=threading.Event)

    def priority(self, now: float, rank: int) -> tuple[int, float, int]:
        """Smallest first (see `WorkerSlots`); `rank`: how many older requests of its client are in progress."""
        if self.client_behind:
            return (2, self.audio_at, self.arrival)
        if not self.streaming:
            return (0, rank, self.arrival)
        return (1, self.audio_at if self.dry_at <= now else self.dry_at, self.arrival)


class Place:
    """A request's place in the line, or (`ticket` set at once) a place it got without waiting.

    It uses four things of its `Admission`: `max_wait`, `leave_line`, `retry_after` and `release`; the admission
    calls its `grant` when its turn comes."""

    def __init__(self, admission: Admission, client: str, arrival: int, ticket: Ticket | None = None) -> None:
        self.admission, self.client, self.arrival, self.ticket = admission, client, arrival, ticket
        self.since = time.monotonic()
        self._turn = anyio.Event()

    async def wait(self) -> Ticket:
        """The ticket, once this request's turn comes. Raises `QueueFull` (cause `queue_timeout`) after the
        admission's `max_wait` seconds, `LineClosed` when the server stops; cancelled, it leaves the line."""
        if self.ticket is not None:
            return self.ticket
        try:
            with anyio.fail_after(self.admission.max_wait):
                await self._turn.wait()
        except TimeoutError:
            if self.ticket is not None:  # its turn came as time ran out: take it
                return self.ticket
            self.admission.leave_line(self)
            waited = time.monotonic() - self.since
            raise QueueFull(self.admission.retry_after(), cause="queue_timeout", waited_s=waited) from None
        except BaseException:
            if self.ticket is not None:
                self.admission.release(self.ticket)  # a place it will not use: the next in line gets it
            else:
                self.admission.leave_line(self)
            raise
        if self.ticket is None:
            raise LineClosed
        return self.ticket

    def grant(self, ticket: Ticket | None) -> None:
        """Its turn (called by its admission): a ticket, or None when the line closes."""
        self.ticket = ticket
        self._turn.set()


class Admission:
    """Which requests are in progress: `places` of them hold a place, more wait in line for one.

    A request that finds every place taken waits in a first-come-first-served line (`join`, then `Place.wait`)
    and gets the next place that frees, oldest first: a newcomer never overtakes a request already waiting, so
    under overload whoever asked first is served first instead of whoever happens to retry at the moment a place
    frees. The line is bounded by time, not length: a request whose expected wait is over `max_wait` seconds is
    refused at once, and one that has waited `max_wait` is refused then, both with `QueueFull` saying when to
    retry. A bounded number of requests per client (`per_client`), waiting ones included, so one address can take
    neither every place nor the whole line.
    """

    def __init__(self, places: int, per_client: int | None = None, max_wait: float = 0.0) -> None:
        self.places = places
        self.per_client = per_client or places
        self.max_wait = max_wait  # seconds a request may wait in line for a place; 0: no line
        self._per_client_active: dict[str, int] = {}  # requests holding a place or waiting in line, per client
        self._in_progress: set[Ticket] = set()
        self._line: deque[Place] = deque()
        self._line_closed = False  # the server is stopping: nobody joins the line any more
        self._arrivals = itertools.count()
        self._mean_request_s: float | None = None  # exponential average of admitted requests' durations
        self._slot_s: float | None = None  # measured interval between places freeing while every place is taken
        self._full_since: float | None = None  # when every place was last found taken (None: a place is free)

    @property
    def requests_in_progress(self) -> int:
        """Requests holding a place (admitted: their response has begun or is about to)."""
        return len(self._in_progress)

    @property
    def requests_waiting(self) -> int:
        """Requests waiting in line for a place (no response sent to them yet)."""
        return len(self._line)

    def join(self, client: str = "") -> Place:
        """A place at once if one is free and nobody waits for one; else a place in line, unless the expected
        wait is over `max_wait` (or there is no line): then `QueueFull`. A client at its cap: `QueueFull` at once."""
        if self._per_client_active.get(client, 0) >= self.per_client:
            raise QueueFull(self.retry_after(), self.per_client)
        arrival = next(self._arrivals)
        if len(self._in_progress) < self.places and not self._line:
            self._count(client, 1)
            return Place(self, client, arrival, self._admit(client, arrival, 0.0))
        ahead = len(self._line)
        expected = self.expected_wait(ahead)
        if self.max_wait <= 0 or expected > self.max_wait:
            raise QueueFull(retry_seconds(expected), ahead=ahead, expected_s=expected)
        if self._line_closed:
            raise LineClosed  # after the refusal a client would get anyway: with no line, a 429 as before the stop
        place = Place(self, client, arrival)
        self._line.append(place)
        self._count(client, 1)
        return place

    def slot_seconds(self) -> float:
        """Seconds between one place freeing and the next while every place is taken: how fast the line moves.

        Measured, not assumed: an exponential average of the real intervals, each from the moment every place
        was taken (or a place was last freed and refilled) to the next release, so quiet periods never count.
        These intervals include every way a place frees (finished, cut, client gone) and the real sharing of
        the workers under that load. Before the first such interval: the mean request duration divided by the
        number of places (with C places busy for D seconds each, one frees every D / C seconds); before any
        request has finished, a guess of DEFAULT_REQUEST_S per request.
        """
        if self._slot_s is not None:
            return self._slot_s
        return (self._mean_request_s or DEFAULT_REQUEST_S) / self.places

    def expected_wait(self, ahead: int) -> float:
        """Seconds until a place frees for a request with `ahead` requests before it in line."""
        return (ahead + 1) * self.slot_seconds()

    def retry_after(self) -> int:
        """Retry-After for a client refused now: the wait a newcomer would face (the whole line ahead of it)."""
        return retry_seconds(self.expected_wait(len(self._line)))

    def client_rank(self, ticket: Ticket) -> int:
        """How many requests of the same client that arrived before this one are still in progress."""
        return sum(1 for other in self._in_progress if other.client == ticket.client and other.arrival < ticket.arrival)

    def close_line(self) -> None:
        """The server stops: every request still waiting gets `LineClosed` at once, and no place; so do later
        ones that would have to wait (requests that find a place free still get it, as before the stop)."""
        self._line_closed = True
        while self._line:
            place = self._line.popleft()
            self._count(place.client, -1)
            place.grant(None)

    def leave_line(self, place: Place) -> None:
        """A request gives up its place in line (timed out, or its client left)."""
        if place in self._line:
            self._line.remove(place)
            self._count(place.client, -1)

    def release(self, ticket: Ticket) -> None:
        """The request is over (finished, failed or gone): stop its work and forget it; the next in line gets its place."""
        ticket.cancel.set()
        if ticket in self._in_progress:
            was_full = len(self._in_progress) >= self.places
            self._in_progress.remove(ticket)
            self._count(ticket.client, -1)
            now = time.monotonic()
            elapsed = now - ticket.started
            self._mean_request_s = elapsed if self._mean_request_s is None else 0.8 * self._mean_request_s + 0.2 * elapsed
            if was_full and self._full_since is not None:
                interval = now - self._full_since
                self._slot_s = interval if self._slot_s is None else 0.8 * self._slot_s + 0.2 * interval
            self._full_since = None
            while self._line and len(self._in_progress) < self.places:
                place = self._line.popleft()
                place.grant(self._admit(place.client, place.arrival, now - place.since))

    def _admit(self, client: str, arrival: int, queued_s: float) -> Ticket:
        ticket = Ticket(arrival, time.monotonic(), client, queued_s)
        self._in_progress.add(ticket)
        if len(self._in_progress) >= self.places and self._full_since is None:
            self._full_since = ticket.started
        return ticket

    def _count(self, client: str, change: int) -> None:
        count = self._per_client_active.get(client, 0) + change
        if count > 0:
            self._per_client_active[client] = count
        else:
            self._per_client_active.pop(client, None)


@dataclass(eq=False)
class _Waiter:
    ticket: Ticket
    granted: anyio.Event = field(default_factory=anyio.Event)


class WorkerSlots:
    """The CPU job slots: at most `workers` jobs of requests in progress run at once, each in a worker thread.

    When a slot frees up it goes, first, to requests whose first audio is not out yet: a new client never waits
    behind another client's long text, only behind the jobs already running. Among those, a client's first
    request in progress goes before its second (`rank`, from the admission: so one address with four requests
    does not put a newcomer from another behind all four), then the oldest: a request about to send its first
    audio is not overtaken by newer ones. Among requests already streaming it goes to one whose listener has run
    out of audio, the one whose last audio went out the longest ago (under load every listener waits: this
    spreads the waits between audio bytes evenly instead of piling them on one), and then to the one whose
    listener will run out first. Last come requests whose client has not yet taken the audio already sent (a
    send is waiting on it): that listener has audio in hand, and a client reading slowly must not turn the
    server's work ahead of it into waits for everyone else.
    """

    def __init__(self, workers: int, rank: Callable[[Ticket], int]) -> None:
        self.workers = workers
        self.jobs_finished = 0  # jobs that ran to their end (returned or raised) since the start
        self._rank = rank  # how many older requests of a ticket's client are in progress
        self._free = workers
        self._waiters: list[_Waiter] = []

    @property
    def jobs_running(self) -> int:
        """Jobs running on a worker now."""
        return self.workers - self._free

    @property
    def jobs_waiting(self) -> int:
        """Jobs of requests in progress waiting for a worker."""
        return len(self._waiters)

    async def run(self, ticket: Ticket, work: Callable[..., T], *args: object) -> T:
        """Run `work(*args)` in a worker thread when this ticket's turn comes."""
        await self._acquire(ticket)
        try:
            # Not abandoned on cancellation: the caller sets ticket.cancel first, and the work
            # checks it between decoding steps, so the thread ends within one step.
            return await anyio.to_thread.run_sync(work, *args)
        finally:
            self.jobs_finished += 1
            self._hand_over()

    async def _acquire(self, ticket: Ticket) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = _Waiter(ticket)
        self._waiters.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.granted.is_set():
                self._hand_over()  # we were given a slot we will not use: pass it on
            raise

    def _hand_over(self) -> None:
        if not self._waiters:
            self._free += 1
            return
        now = time.monotonic()
        chosen = min(self._waiters, key=lambda waiter: waiter.ticket.priority(now, self._rank(waiter.ticket)))
        self._waiters.remove(chosen)
        chosen.granted.set()


class Scheduler:
    """One server's admission and worker slots, wired together, and the speed its jobs measure.

    `extra_places`: places beyond the workers (the QUEUE_SIZE setting), so `workers + extra_places` requests may
    be in progress at once, sharing the workers job by job. The counters are read where they live:
    `admission.requests_in_progress` and `admission.requests_waiting`, `slots.jobs_running`, `slots.jobs_waiting`
    and `slots.jobs_finished`.
    """

    def __init__(self, workers: int, extra_places: int, per_client: int | None = None, max_wait: float = 0.0) -> None:
        self.admission = Admission(workers + extra_places, per_client, max_wait)
        self.slots = WorkerSlots(workers, self.admission.client_rank)
        self.speed = SynthesisSpeed()  # measured by the jobs of every request, for the chunk plan

    def join(self, client: str = "") -> Place:
        """A place for a request of `client`, at once or in the line (see `Admission.join`)."""
        return self.admission.join(client)

    async def run(self, ticket: Ticket, work: Callable[..., T], *args: object) -> T:
        """One job of an admitted request, on a worker when its turn comes (see `WorkerSlots.run`)."""
        return await self.slots.run(ticket, work, *args)

    def release(self, ticket: Ticket) -> None:
        """The request is over: its work stops and its place goes to the next in line (see `Admission.release`)."""
        self.admission.release(ticket)

    def close_line(self) -> None:
        """The server stops: requests waiting for a place get `LineClosed` (see `Admission.close_line`)."""
        self.admission.close_line()
