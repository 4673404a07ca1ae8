"""A real server process on a free loopback port: how the tests and the benchmark start `python server.py`
(and the benchmark, Genie-TTS's own server, the same way)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    base_url: str
    log_path: Path
    process: subprocess.Popen
    started_at: float  # time.monotonic() when the process was started
    cold_start_s: float = 0.0  # from the process's start until it answered its readiness path
    seen_while_loading: list[tuple[str, int, dict]] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_line(self, needle: str, timeout: float = 10) -> str:
        """The first log line containing `needle`, waiting for it: the request's line follows its last byte."""
        deadline = time.monotonic() + timeout
        while True:
            line = next((line for line in self.log().splitlines() if needle in line), None)
            if line is not None:
                return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {needle!r} within {timeout} s")
            time.sleep(0.05)

    def health(self) -> dict:
        return httpx.get(f"{self.base_url}/health", timeout=10).json()

    def wait_idle(self, timeout: float = 30) -> dict:
        """Poll /health until no request is active; return the last health document."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.health()
            synthesis = state["synthesis"]
            if synthesis["active_requests"] == 0 and synthesis["running"] == 0:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"server still busy after {timeout} s: {state}")
            time.sleep(0.05)

    def peak_rss_mb(self) -> float:
        """The process's high-water mark of resident memory (VmHWM), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for pid {self.process.pid}")

    def stop(self) -> None:
        """SIGTERM, as a Space stops it; killed if it is not gone after 30 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(
    log_path: Path,
    env: dict[str, str],
    *,
    command: Sequence[str] = ("server.py",),
    cwd: Path = ROOT,
    ready_path: str = "/health",
    ready_timeout: float = 300,
    while_loading: Callable[[ServerProcess, httpx.Response], None] | None = None,
    port: int | None = None,
) -> ServerProcess:
    """Start `python <command>` in `cwd` (a checkout) with `env` over this process's environment and a free
    loopback port in HOST/PORT (what server.py reads) and UVICORN_HOST/UVICORN_PORT (what `python -m uvicorn`
    reads); return once `ready_path` answers 200.

    `while_loading` is called with each answer that is not 200 yet (our server's voices are loading).
    `port`: this one rather than a free one (a replica restarted behind a balancer keeps its address).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    address = {"HOST": "127.0.0.1", "PORT": str(port), "UVICORN_HOST": "127.0.0.1", "UVICORN_PORT": str(port)}
    full_env = {**os.environ, **address, "PYTHONUNBUFFERED": "1", **env}
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, *command], cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", log_path, process, started)
    deadline = started + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log()}")
        try:
            response = httpx.get(f"{server.base_url}{ready_path}", timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if response.status_code == 200:
            server.cold_start_s = time.monotonic() - started
            return server
        if while_loading is not None:
            while_loading(server, response)
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"the server did not become healthy within {ready_timeout} s:\n{server.log()}")


@contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    """An ASGI application of this process under uvicorn, in a thread: for tests that wrap or break its parts.

    Yields its base URL. The application is used as it is: its lifespan does not run (voices are set by the test).
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
