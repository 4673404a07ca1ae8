"""The waiting line before the 200 (engine/synthesis/scheduler.py): places in arrival order, waits measured, refusals with
the expected wait. Plain tickets stand for requests; tests/test_admission_e2e.py runs it on a real server."""

from __future__ import annotations

import math
import time

import anyio
import pytest

from engine.synthesis.scheduler import MAX_RETRY_AFTER_S, LineClosed, Place, QueueFull, Scheduler, Ticket
from tests.helpers import admitted, settle  # the line is served synchronously on release: settled, every waiter has its answer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def enter(scheduler: Scheduler, client: str) -> Ticket:
    """A request's ticket, at once or after waiting in line for it."""
    return await scheduler.join(client).wait()


async def hang_up(place: Place) -> None:
    """What a request waiting in line does when its client hangs up: its wait is cancelled, it leaves the line."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await place.wait()


def measured(scheduler: Scheduler, seconds: float) -> None:
    """Give the scheduler one real saturated interval of `seconds`: every place taken, then one freed."""
    held = [admitted(scheduler, f"warm-{index}") for index in range(scheduler.admission.places)]
    time.sleep(seconds)
    for ticket in held:
        scheduler.release(ticket)


@pytest.mark.anyio
async def test_waiting_requests_get_places_in_arrival_order() -> None:
    scheduler = Scheduler(workers=1, extra_places=1, max_wait=30)
    measured(scheduler, 0.01)  # 20 in line: about 0.2 s expected
    holders = [admitted(scheduler, "holder-a"), admitted(scheduler, "holder-b")]
    served: list[int] = []
    tickets: dict[int, Ticket] = {}

    async def request(number: int) -> None:
        ticket = await scheduler.join(f"client-{number}").wait()
        served.append(number)
        tickets[number] = ticket

    async with anyio.create_task_group() as tasks:
        for number in range(20):
            tasks.start_soon(request, number)
            await settle()  # each one in the line before the next arrives
        assert scheduler.admission.requests_waiting == 20 and served == []
        for ticket in holders:
            scheduler.release(ticket)
        await settle()
        assert served == [0, 1]
        for number in range(20):
            # A newcomer arriving right as a place frees never takes it from those already waiting.
            line_before = scheduler.admission.requests_waiting
            scheduler.release(tickets[number])
            if line_before:
                assert scheduler.admission.requests_waiting == line_before - 1
                newcomer = scheduler.join("newcomer")
                assert newcomer.ticket is None  # in line behind the others
                await hang_up(newcomer)
            await settle()
        assert scheduler.admission.requests_waiting == 0
    assert served == list(range(20))
    assert [tickets[number].arrival for number in range(20)] == sorted(tickets[number].arrival for number in range(20))
    assert all(tickets[number].queued_s > 0 for number in range(20))


@pytest.mark.anyio
async def test_a_client_that_leaves_the_line_frees_its_spot_at_once() -> None:
    scheduler = Scheduler(workers=1, extra_places=0, per_client=1, max_wait=30)
    holder = admitted(scheduler, "holder")
    order: list[str] = []

    async def request(client: str, scope: anyio.CancelScope) -> None:
        with scope:
            await scheduler.join(client).wait()
            order.append(client)

    leaving, staying = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(request, "leaving", leaving)
        await settle()
        tasks.start_soon(request, "staying", staying)
        await settle()
        assert scheduler.admission.requests_waiting == 2
        leaving.cancel()  # what api/speech.py does when the client's http.disconnect arrives
        await settle()
        assert scheduler.admission.requests_waiting == 1
        assert "leaving" not in scheduler.admission._per_client_active  # its share of the per-client cap is back
        scheduler.release(holder)
        await settle()
    assert order == ["staying"]
    assert scheduler.admission.requests_in_progress == 1 and scheduler.admission.requests_waiting == 0


@pytest.mark.anyio
async def test_a_place_granted_to_a_request_that_leaves_goes_to_the_next() -> None:
    scheduler = Scheduler(workers=1, extra_places=0, max_wait=30)
    holder = admitted(scheduler, "holder")
    got: list[str] = []

    async def request(client: str, scope: anyio.CancelScope) -> None:
        with scope:
            await scheduler.join(client).wait()
            got.append(client)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(request, "first", first)
        await settle()
        tasks.start_soon(request, "second", second)
        await settle()
        first.cancel()  # the client of "first" hangs up, and before its task runs again...
        scheduler.release(holder)  # ...a place frees and goes to "first", still in line
        await settle()
    assert got == ["second"]
    assert scheduler.admission.requests_in_progress == 1


@pytest.mark.anyio
async def test_a_request_that_waits_max_wait_is_refused_with_queue_timeout() -> None:
    scheduler = Scheduler(workers=1, extra_places=0, max_wait=1)
    measured(scheduler, 0.05)
    holder = admitted(scheduler, "holder")
    started = time.monotonic()
    with pytest.raises(QueueFull) as refused:
        await scheduler.join("patient").wait()
    waited = time.monotonic() - started
    assert refused.value.cause == "queue_timeout" and refused.value.client_limit is None
    assert 1 <= waited < 5 and refused.value.waited_s >= 1
    assert refused.value.retry_after == math.ceil(scheduler.admission.expected_wait(0))  # a newcomer's wait now: one slot
    assert scheduler.admission.requests_waiting == 0 and "patient" not in scheduler.admission._per_client_active
    scheduler.release(holder)


@pytest.mark.anyio
async def test_the_per_client_cap_counts_requests_waiting_in_line() -> None:
    scheduler = Scheduler(workers=1, extra_places=0, per_client=2, max_wait=30)
    holder = admitted(scheduler, "busy")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(enter, scheduler, "greedy")
        tasks.start_soon(enter, scheduler, "greedy")
        await settle()
        assert scheduler.admission.requests_waiting == 2
        with pytest.raises(QueueFull) as refused:
            scheduler.join("greedy")  # at once, not after waiting
        assert refused.value.cause == "client_limit" and refused.value.client_limit == 2
        other = scheduler.join("other")  # another address still gets in line
        assert other.ticket is None and scheduler.admission.requests_waiting == 3
        tasks.cancel_scope.cancel()
    await settle()
    assert scheduler.admission.requests_waiting == 1 and scheduler.admission._per_client_active == {"busy": 1, "other": 1}
    scheduler.release(holder)
    assert other.ticket is not None  # "other" was next in line
    scheduler.release(other.ticket)
    assert scheduler.admission._per_client_active == {}


@pytest.mark.anyio
async def test_expected_wait_is_measured_from_real_completions() -> None:
    scheduler = Scheduler(workers=2, extra_places=1, max_wait=30)
    # Before any request finished: a guess per request, shared by the places.
    assert scheduler.admission.slot_seconds() == pytest.approx(5.0 / 3)
    one = admitted(scheduler, "a")
    time.sleep(0.2)
    scheduler.release(one)  # finished while places were free: the mean duration, not a saturated interval
    assert scheduler.admission.slot_seconds() == pytest.approx(0.2 / 3, rel=0.5)
    measured(scheduler, 0.3)  # every place taken for 0.3 s, then one frees
    slot = scheduler.admission.slot_seconds()
    assert slot == pytest.approx(0.3, rel=0.5)
    assert scheduler.admission.expected_wait(4) == pytest.approx(5 * slot)
    measured(scheduler, 0.1)
    assert scheduler.admission.slot_seconds() == pytest.approx(0.8 * slot + 0.2 * 0.1, rel=0.2)  # an average of intervals


@pytest.mark.anyio
async def test_a_request_whose_expected_wait_is_too_long_is_refused_at_once_with_it() -> None:
    scheduler = Scheduler(workers=1, extra_places=0, max_wait=30)
    measured(scheduler, 0.2)
    scheduler.admission.max_wait = 2.5 * scheduler.admission.slot_seconds()  # room for two in line: expected 1 and 2 slots
    holder = admitted(scheduler, "holder")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(enter, scheduler, "first")
        tasks.start_soon(enter, scheduler, "second")
        await settle()
        assert scheduler.admission.requests_waiting == 2
        started = time.monotonic()
        with pytest.raises(QueueFull) as refused:
            scheduler.join("third")
        assert time.monotonic() - started < 0.1
        assert refused.value.cause == "server_busy" and refused.value.ahead == 2
        assert refused.value.expected_s == pytest.approx(3 * scheduler.admission.slot_seconds())
        assert refused.value.retry_after == max(1, math.ceil(refused.value.expected_s))
        tasks.cancel_scope.cancel()
    scheduler.release(holder)


def test_retry_after_is_capped_where_the_openai_sdk_still_honours_it() -> None:
    scheduler = Scheduler(workers=1, extra_places=0, max_wait=0)  # no line: refused at once, with the expected wait
    scheduler.admission._slot_s = 25.0  # as measured on a very slow server
    admitted(scheduler, "holder")
    with pytest.raises(QueueFull) as refused:
        admitted(scheduler, "next")
    assert refused.value.expected_s == 25.0 and refused.value.retry_after == 25
    scheduler.admission._slot_s = 150.0
    with pytest.raises(QueueFull) as refused:
        admitted(scheduler, "next")
    assert refused.value.expected_s == 150.0 and refused.value.retry_after == MAX_RETRY_AFTER_S == 60


@pytest.mark.anyio
async def test_no_line_when_max_wait_is_0() -> None:
    scheduler = Scheduler(workers=1, extra_places=1, max_wait=0)
    admitted(scheduler, "a")
    admitted(scheduler, "b")
    with pytest.raises(QueueFull) as refused:
        await scheduler.join("c").wait()
    assert refused.value.cause == "server_busy" and scheduler.admission.requests_waiting == 0


@pytest.mark.anyio
async def test_closing_the_line_refuses_everyone_waiting_and_later_arrivals() -> None:
    scheduler = Scheduler(workers=1, extra_places=0, max_wait=30)
    holder = admitted(scheduler, "holder")
    outcomes: list[str] = []

    async def request(client: str) -> None:
        try:
            await scheduler.join(client).wait()
            outcomes.append("admitted")
        except LineClosed:
            outcomes.append("closed")

    async with anyio.create_task_group() as tasks:
        for number in range(3):
            tasks.start_soon(request, f"c{number}")
        await settle()
        scheduler.close_line()
        await settle()
        assert outcomes == ["closed"] * 3
        with pytest.raises(LineClosed):
            scheduler.join("late")
    assert scheduler.admission._per_client_active == {"holder": 1}
    scheduler.release(holder)
    assert admitted(scheduler, "after").client == "after"  # a free place is still given
