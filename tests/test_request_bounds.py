"""The bounds on one request: its audio (engine/synthesis/audio_budget.py), its client's reading pace (api/read_pace.py) and
its client's share of the scheduler. The end-to-end tests are in tests/test_request_bounds_e2e.py; the estimate
of a text's audio (in phonemes) is tested in tests/test_spoken_limits.py."""

from __future__ import annotations

import pytest

from api.errors import as_api_error
from api.read_pace import ReadPace
from engine.synthesis.audio_budget import TooMuchAudio, token_budget
from engine.synthesis.scheduler import QueueFull, Scheduler
from tests.helpers import admitted


def test_token_budget_is_25_tokens_per_second() -> None:
    assert token_budget(1200) == 30000
    assert token_budget(0.5) == 12


def test_too_much_audio_is_a_400_on_input() -> None:
    error = as_api_error(TooMuchAudio(341.3, 300))
    assert error is not None
    assert (error.status, error.code, error.param) == (400, "audio_too_long", "input")
    assert "341 s" in error.message and "300 s" in error.message


def test_read_pace_a_real_time_listener_keeps_its_place() -> None:
    pace = ReadPace(min_rate=0.5, grace=5)
    for _ in range(100):  # each second of audio taken after waiting one second: a player at 1x
        assert pace.allowance() > 0
        pace.record(waited_s=1.0, audio_s=1.0)
    assert pace.allowance() == 5  # never more than the grace for one send


def test_read_pace_a_slow_reader_runs_out_even_if_every_send_progresses() -> None:
    pace = ReadPace(min_rate=0.5, grace=5)
    sends = 0
    while pace.allowance() > 0:  # each send waits 1 s for 0.1 s of audio: a reader at a tenth of real time
        pace.record(waited_s=1.0, audio_s=0.1)
        sends += 1
    assert sends == 7  # 7 s waited > 5 s grace + 0.7 s of audio / 0.5


def test_read_pace_off_is_the_plain_send_timeout() -> None:
    pace = ReadPace(min_rate=0, grace=30)
    pace.record(waited_s=1000, audio_s=0)
    assert pace.allowance() == 30


def test_one_client_gets_at_most_its_share_of_the_places() -> None:
    scheduler = Scheduler(workers=2, extra_places=8, per_client=3)
    mine = [admitted(scheduler, "10.0.0.1") for _ in range(3)]
    with pytest.raises(QueueFull) as refused:
        admitted(scheduler, "10.0.0.1")
    assert refused.value.client_limit == 3
    error = as_api_error(refused.value)
    assert error is not None and (error.status, error.code) == (429, "too_many_concurrent_requests")
    others = [admitted(scheduler, "10.0.0.2") for _ in range(3)]  # another address is not affected
    scheduler.release(mine[0])
    mine.append(admitted(scheduler, "10.0.0.1"))  # a finished request gives its place back
    with pytest.raises(QueueFull):
        admitted(scheduler, "10.0.0.1")
    for ticket in mine + others:
        scheduler.release(ticket)
    assert scheduler.admission.requests_in_progress == 0
    assert scheduler.admission._per_client_active == {}  # nothing kept for clients with no request in progress


def test_the_server_wide_bound_still_comes_first() -> None:
    scheduler = Scheduler(workers=1, extra_places=1, per_client=4)
    admitted(scheduler, "a")
    admitted(scheduler, "b")
    with pytest.raises(QueueFull) as full:
        admitted(scheduler, "c")
    assert full.value.client_limit is None
