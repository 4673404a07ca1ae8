"""End to end: SIGTERM (what a Space restart sends) stops the server cleanly and within a bound."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server
from tests.test_speech_e2e import LONG

SHUTDOWN_TIMEOUT = 3


@pytest.mark.timeout(300)
def test_sigterm_refuses_new_work_aborts_streams_honestly_and_exits_0(demo_root: Path, tmp_path: Path) -> None:
    server = start_server("shutdown", tmp_path, {"SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)})
    try:
        host, port = server.base_url.removeprefix("http://").split(":")
        received = b""
        with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", json={"model": "demo", "input": LONG}, timeout=60) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            while len(received) <= 44:
                received += next(chunks)  # the first audio is here; most of the text is still to come
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            time.sleep(0.5)
            with pytest.raises(OSError):  # the listening socket is closed at once
                socket.create_connection((host, int(port)), timeout=2).close()

            # The stream cannot finish within SHUTDOWN_TIMEOUT, so it must end broken, never cleanly short.
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in chunks:
                    received += chunk
        assert server.process.wait(timeout=SHUTDOWN_TIMEOUT + 15) == 0
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT + 15
        log = server.log()
        assert "Shutting down" in log and "Finished server process" in log
    finally:
        if server.process.poll() is None:
            stop_server(server)
