"""The fair scheduler, with plain functions as the work (the end-to-end tests run real synthesis)."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from engine.synthesis.scheduler import MAX_RETRY_AFTER_S, QueueFull, Scheduler, Ticket
from tests.helpers import admitted, settle


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_new_request_first_segment_jumps_ahead_of_long_requests() -> None:
    scheduler = Scheduler(workers=1, extra_places=8)
    order: list[str] = []
    gate = threading.Event()

    def work(label: str) -> None:
        if label == "A0":
            gate.wait(5)  # hold the only worker until everybody is queued
        else:
            time.sleep(0.03)
        order.append(label)

    async def request(label: str, segments: int) -> None:
        ticket = admitted(scheduler)
        try:
            for index in range(segments):
                await scheduler.run(ticket, work, f"{label}{index}")
                ticket.streaming = True  # as engine.synthesis.speech does once a segment's audio is out
        finally:
            scheduler.release(ticket)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(request, "A", 4)
        await settle()  # A0 holds the worker
        tasks.start_soon(request, "B", 4)
        await settle()  # B0 waits for it
        gate.set()
        while len(order) < 3:
            await anyio.sleep(0.001)
        tasks.start_soon(request, "C", 1)  # arrives while A and B alternate
    # C waited for at most the segment running when it arrived, not for A's and B's remaining text.
    assert order.index("C0") <= 4, order
    assert len(order) == 9 and order.index("C0") < 8
    assert order[:4] == ["A0", "B0", "A1", "B1"], order


@pytest.mark.anyio
async def test_queue_bound_raises_queue_full_with_retry_after() -> None:
    scheduler = Scheduler(workers=1, extra_places=1)
    first, second = admitted(scheduler), admitted(scheduler)
    with pytest.raises(QueueFull) as caught:
        admitted(scheduler)
    assert 1 <= caught.value.retry_after <= MAX_RETRY_AFTER_S
    scheduler.release(first)
    assert first.cancel.is_set()
    admitted(scheduler)
    scheduler.release(second)


@pytest.mark.anyio
async def test_workers_run_in_parallel_up_to_the_limit() -> None:
    scheduler = Scheduler(workers=2, extra_places=4)
    running, peak = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def request() -> None:
        ticket = admitted(scheduler)
        await scheduler.run(ticket, work)
        scheduler.release(ticket)

    async with anyio.create_task_group() as tasks:
        for _ in range(5):
            tasks.start_soon(request)
    assert peak == 2
    slots, admission = scheduler.slots, scheduler.admission
    assert slots.jobs_running == 0 and slots.jobs_waiting == 0 and admission.requests_in_progress == 0


@pytest.mark.anyio
async def test_cancelled_waiter_gives_its_slot_back() -> None:
    scheduler = Scheduler(workers=1, extra_places=4)
    holder, waiter = admitted(scheduler), admitted(scheduler)
    release = threading.Event()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(scheduler.run, holder, release.wait, 5)
        await settle()  # the holder has the worker
        with anyio.move_on_after(0.05):
            await scheduler.run(waiter, lambda: None)  # gives up while waiting
        assert scheduler.slots.jobs_waiting == 0
        release.set()
    assert scheduler.slots.jobs_running == 0
    assert await scheduler.run(waiter, lambda: 42) == 42


async def _order_of(scheduler: Scheduler, tickets: dict[str, Ticket]) -> list[str]:
    """The order in which one worker runs a job of each ticket, all queued behind a job holding it."""
    holder = admitted(scheduler, "holder")
    order: list[str] = []
    release = threading.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(scheduler.run, holder, release.wait, 5)
        await settle()
        for label, ticket in tickets.items():
            tasks.start_soon(scheduler.run, ticket, order.append, label)
            await settle()  # waiting, before the next one arrives
        release.set()
    return order


@pytest.mark.anyio
async def test_requests_before_their_first_audio_go_first_oldest_first() -> None:
    scheduler = Scheduler(workers=1, extra_places=8)
    streaming, older_new, newer_new = (admitted(scheduler) for _ in range(3))
    streaming.streaming = True
    order = await _order_of(scheduler, {"streaming": streaming, "newer": newer_new, "older": older_new})
    # older_new was admitted before newer_new; both beat the request that is already streaming.
    assert order == ["older", "newer", "streaming"]


@pytest.mark.anyio
async def test_among_streaming_requests_the_one_silent_longest_goes_first_then_the_one_running_dry_first() -> None:
    """Under load every listener waits; the slot goes to the listener who has waited longest since its last audio
    (so the waits are spread evenly), and a listener with audio still buffered waits behind every silent one."""
    scheduler = Scheduler(workers=1, extra_places=8)
    now = time.monotonic()
    tickets = {}
    for label, audio_at, dry_at in (
        ("silent 1 s", now - 1.0, now - 0.5),
        ("silent 3 s", now - 3.0, now - 2.9),
        ("buffered 2 s", now - 0.1, now + 2.0),
        ("buffered 1 s", now - 0.2, now + 1.0),
    ):
        ticket = admitted(scheduler)
        ticket.streaming, ticket.audio_at, ticket.dry_at = True, audio_at, dry_at
        tickets[label] = ticket
    order = await _order_of(scheduler, tickets)
    assert order == ["silent 3 s", "silent 1 s", "buffered 1 s", "buffered 2 s"]


@pytest.mark.anyio
async def test_a_clients_first_request_goes_before_another_clients_second_third_and_fourth() -> None:
    """One address with four requests before their first audio must not put a newcomer behind all four."""
    scheduler = Scheduler(workers=1, extra_places=8)
    tickets = {f"busy {n}": admitted(scheduler, "busy") for n in range(1, 5)}
    tickets["newcomer"] = admitted(scheduler, "newcomer")
    order = await _order_of(scheduler, tickets)
    assert order == ["busy 1", "newcomer", "busy 2", "busy 3", "busy 4"]


@pytest.mark.anyio
async def test_a_request_whose_client_has_not_read_its_audio_goes_after_every_other() -> None:
    """A client reading slowly has audio in hand: the server's work ahead of it waits behind everyone's, even
    behind listeners with audio buffered, so a slow reader's decoding never delays another listener's audio."""
    scheduler = Scheduler(workers=1, extra_places=8)
    now = time.monotonic()
    slow, buffered, silent, new = (admitted(scheduler, client) for client in ("slow", "buffered", "silent", "new"))
    slow.streaming, slow.audio_at, slow.dry_at, slow.client_behind = True, now - 20.0, now - 19.0, True
    buffered.streaming, buffered.audio_at, buffered.dry_at = True, now - 0.1, now + 5.0
    silent.streaming, silent.audio_at, silent.dry_at = True, now - 1.0, now - 0.5
    order = await _order_of(scheduler, {"slow reader": slow, "buffered": buffered, "silent": silent, "new": new})
    assert order == ["new", "silent", "buffered", "slow reader"]
    # Once the client has read it, the same request is a silent listener again: first among the streaming ones.
    slow.client_behind = False
    order = await _order_of(scheduler, {"silent": silent, "slow reader": slow})
    assert order == ["slow reader", "silent"]
