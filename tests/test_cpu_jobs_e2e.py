"""Stretching (`speed`) and encoding take CPU time too, seconds for a long segment at speed 0.25: they run as
scheduler jobs, so that no more than WORKERS CPU jobs of requests ever run at once. Checked on the real
application, served in this process on the demo voice, by watching the scheduler while the encoder works."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import MEDIUM, demo_application, wav_info
from tests.server_process import serve_in_thread

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("response_format", ["wav", "mp3"])
def test_stretching_and_encoding_hold_a_worker_slot(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch, response_format: str
) -> None:
    from settings import Settings
    from wavstream.output import AudioOutput

    app = demo_application(demo_root, Settings(workers=1, queue_size=4))
    scheduler = app.scheduler  # type: ignore[attr-defined]
    slots_taken: list[int] = []
    push, finish = AudioOutput.push, AudioOutput.finish

    def watched_push(self: AudioOutput, audio: np.ndarray) -> bytes:
        slots_taken.append(scheduler.slots.jobs_running)
        return push(self, audio)

    def watched_finish(self: AudioOutput) -> bytes:
        slots_taken.append(scheduler.slots.jobs_running)
        return finish(self)

    monkeypatch.setattr(AudioOutput, "push", watched_push)
    monkeypatch.setattr(AudioOutput, "finish", watched_finish)
    with serve_in_thread(app) as url:
        body = {"model": "demo", "input": MEDIUM, "speed": 0.25, "response_format": response_format}
        response = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=120)
    assert response.status_code == 200
    if response_format == "wav":
        assert wav_info(response.content)[3] > 0
    assert len(slots_taken) >= 3  # two segments and the end
    assert slots_taken == [1] * len(slots_taken)  # each ran holding the one worker slot, not beside it
