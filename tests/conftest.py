"""Shared fixtures: the generated demo voice and real server processes serving it.

The demo voice is built once into `.cache/tests/` (ignored by git) and reused across runs.
Servers are real `python server.py` processes on free ports, shared by the whole run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "tests"
OUTPUT = ROOT / "tests" / "output"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def demo_root() -> Path:
    """`python -m engine.demo` output: demo/ (the voice) and GenieData/ (stand-ins)."""
    from engine.demo import BUILD_VERSION

    root = CACHE / f"demo-{BUILD_VERSION}"
    subprocess.run([sys.executable, "-m", "engine.demo", str(root)], cwd=ROOT, check=True, capture_output=True)
    return root


@dataclass
class ServerProcess:
    base_url: str
    log_path: Path
    process: subprocess.Popen
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


def start_server(name: str, models_dir: Path, env: dict[str, str], probe_while_loading: bool = False) -> ServerProcess:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = OUTPUT / f"server-{name}-{os.getpid()}.log"  # per test run: concurrent runs must not share logs
    full_env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MODELS_DIR": str(models_dir),
        "DEMO": "1",
        "CACHE_DIR": str(CACHE),
        "GENIE_DATA_DIR": str(CACHE / "no-genie-data"),
        "GENIE_DOWNLOAD": "0",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "server.py"], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", log_path, process)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server {name} exited with {process.returncode}:\n{server.log()}")
        try:
            response = httpx.get(f"{server.base_url}/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return server
        if probe_while_loading and not server.seen_while_loading:
            auth = {"authorization": f"Bearer {env['API_KEY']}"} if "API_KEY" in env else {}
            speech = httpx.post(
                f"{server.base_url}/v1/audio/speech", json={"model": "demo", "input": "こんにちは"}, headers=auth, timeout=10
            )
            server.seen_while_loading.append(("health", response.status_code, response.json()))
            server.seen_while_loading.append(("speech", speech.status_code, speech.json()))
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server {name} did not become healthy:\n{server.log()}")


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding only a broken voice: the server must skip it and still serve the demo."""
    models = tmp_path_factory.mktemp("models")
    broken = models / "broken"
    (broken / "tts_models").mkdir(parents=True)
    (broken / "reference").mkdir()
    return models


@pytest.fixture(scope="session")
def server(demo_root: Path, models_dir: Path) -> Iterator[ServerProcess]:
    """The main server: demo voice, default settings, no API key."""
    process = start_server("main", models_dir, {})
    yield process
    stop_server(process)


@pytest.fixture(scope="session")
def strict_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with an API key, one worker and no wait queue (so a second request gets 429),
    voice aliases, mp3 as the default format, a rate limit and short client timeouts (tests/test_limits_e2e.py)."""
    env = {
        "API_KEY": "test-secret-key",
        "WORKERS": "1",
        "QUEUE_SIZE": "0",
        "ALLOWED_ORIGINS": "https://app.example",
        "VOICE_ALIASES": "alloy=demo/calm,echo=demo",
        "DEFAULT_RESPONSE_FORMAT": "mp3",
        "RATE_LIMIT_PER_MINUTE": "20",
        "HEAD_TIMEOUT": "3",
        "BODY_TIMEOUT": "3",
        "SEND_TIMEOUT": "5",
    }
    process = start_server("strict", tmp_path_factory.mktemp("empty-models"), env, probe_while_loading=True)
    yield process
    stop_server(process)


@pytest.fixture(scope="session")
def ffprobe() -> str:
    path = shutil.which("ffprobe")
    if path is None:
        pytest.fail("ffprobe is required (install ffmpeg; .ci/run does)")
    return path
