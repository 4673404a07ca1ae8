"""Fair scheduling of synthesis jobs (a segment's T2S loop, or its vocoder) across concurrent requests.

Each request holds a `Ticket` and asks for one worker slot per job. When a slot frees up it goes,
first, to requests whose first audio is not out yet, oldest first: a new client never waits behind
another client's long text, only behind the jobs already running, and a request about to send its
first audio is not overtaken by newer ones. Among requests already streaming it goes to one whose
listener has run out of audio, the one whose last audio went out the longest ago (under load every
listener waits: this spreads the waits between audio bytes evenly instead of piling them on one), and
then to the one whose listener will run out first. A bounded number of requests may be admitted, and a bounded number per client
(so one address cannot take every place); beyond either, `QueueFull` says when to retry.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from engine.synthesis_speed import SynthesisSpeed

T = TypeVar("T")


class QueueFull(Exception):
    """No place for this request: the server is full (`client_limit` None) or this client has its share."""

    def __init__(self, retry_after: int, client_limit: int | None = None) -> None:
        super().__init__(f"server busy, retry after {retry_after} s")
        self.retry_after = retry_after
        self.client_limit = client_limit


@dataclass(eq=False)
class Ticket:
    """One admitted request: its place in the fairness order and its cancellation flag."""

    arrival: int
    started: float
    client: str = ""
    served: int = 0
    streaming: bool = False  # its first audio has been sent
    audio_at: float = 0.0  # when (time.monotonic) its last audio went out
    dry_at: float = 0.0  # when its listener will have played all the audio sent so far
    cancel: threading.Event = field(default_factory=threading.Event)

    def priority(self, now: float) -> tuple[bool, float, int]:
        if not self.streaming:
            return (False, 0.0, self.arrival)
        return (True, self.audio_at if self.dry_at <= now else self.dry_at, self.arrival)


@dataclass(eq=False)
class _Waiter:
    ticket: Ticket
    granted: anyio.Event = field(default_factory=anyio.Event)


class Scheduler:
    def __init__(self, workers: int, queue_size: int, per_client: int | None = None) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.per_client = per_client or self.capacity
        self._per_client_active: dict[str, int] = {}
        self._free = workers
        self._waiters: list[_Waiter] = []
        self._active: set[Ticket] = set()
        self._arrivals = itertools.count()
        self._mean_request_s = 5.0
        self.jobs_run = 0
        self.speed = SynthesisSpeed()  # measured by the jobs of every request, for the chunk plan

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def running(self) -> int:
        return self.workers - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def admit(self, client: str = "") -> Ticket:
        if len(self._active) >= self.capacity:
            raise QueueFull(self.retry_after())
        if self._per_client_active.get(client, 0) >= self.per_client:
            raise QueueFull(self.retry_after(), self.per_client)
        ticket = Ticket(next(self._arrivals), time.monotonic(), client)
        self._active.add(ticket)
        self._per_client_active[client] = self._per_client_active.get(client, 0) + 1
        return ticket

    def release(self, ticket: Ticket) -> None:
        """The request is over (finished, failed or gone): stop its work and forget it."""
        ticket.cancel.set()
        if ticket in self._active:
            self._active.remove(ticket)
            if self._per_client_active[ticket.client] > 1:
                self._per_client_active[ticket.client] -= 1
            else:
                del self._per_client_active[ticket.client]
            elapsed = time.monotonic() - ticket.started
            self._mean_request_s = 0.8 * self._mean_request_s + 0.2 * elapsed

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the recent request rate."""
        estimate = self._mean_request_s * max(1, len(self._active) - self.workers + 1) / self.workers
        return max(1, min(120, math.ceil(estimate)))

    async def run(self, ticket: Ticket, work: Callable[..., T], *args: object) -> T:
        """Run `work(*args)` in a worker thread when this ticket's turn comes."""
        await self._acquire(ticket)
        try:
            # Not abandoned on cancellation: the caller sets ticket.cancel first, and the work
            # checks it between decoding steps, so the thread ends within one step.
            return await anyio.to_thread.run_sync(work, *args)
        finally:
            ticket.served += 1
            self.jobs_run += 1
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
        chosen = min(self._waiters, key=lambda waiter: waiter.ticket.priority(now))
        self._waiters.remove(chosen)
        chosen.granted.set()
