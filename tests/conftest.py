"""Shared fixtures: the generated demo voice and real server processes serving it.

The demo voice is built once into `.cache/tests/` (ignored by git) and reused across runs.
Servers are real `python server.py` processes on free ports, shared by the whole run.
Helpers the tests import live in tests/helpers.py and tests/server_process.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import CACHE, SPEECH, start_demo_server
from tests.server_process import ROOT, ServerProcess

#: Fixtures that start a server or load the demo voice: a test using one must be marked e2e, so that
#: `pytest -m "not e2e"` stays the unit tests alone, in seconds.
E2E_FIXTURES = {"demo_root", "server", "strict_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        slow = E2E_FIXTURES & set(getattr(item, "fixturenames", ()))
        if slow and item.get_closest_marker("e2e") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(slow))}: mark it @pytest.mark.e2e")


@pytest.fixture(scope="session")
def demo_root() -> Path:
    """`python -m engine.tools.demo` output: demo/ (the voice) and GenieData/ (stand-ins)."""
    from engine.voices.demo_voices import BUILD_VERSION

    root = CACHE / f"demo-{BUILD_VERSION}"
    subprocess.run([sys.executable, "-m", "engine.tools.demo", str(root)], cwd=ROOT, check=True, capture_output=True)
    return root


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding only a broken voice: the server must skip it and still serve the demo."""
    models = tmp_path_factory.mktemp("models")
    broken = models / "broken"
    (broken / "tts_models").mkdir(parents=True)
    (broken / "reference").mkdir()
    return models


@pytest.fixture(scope="module")
def demo_voice(demo_root: Path):
    """The demo voice loaded in this process, for in-process tests of synthesis."""
    from engine.genie import import_genie
    from engine.voices.voice import SharedModels, load_voice
    from engine.voices.voice_folder import inspect_voice

    import_genie(demo_root / "GenieData")
    shared = SharedModels.load(demo_root / "GenieData", threads=2)
    return load_voice(inspect_voice(demo_root / "demo"), shared, threads=2)


@pytest.fixture(scope="session")
def server(demo_root: Path, models_dir: Path) -> Iterator[ServerProcess]:
    """The main server: demo voice, default settings, no API key."""
    process = start_demo_server("main", models_dir, {})
    yield process
    process.stop()


@pytest.fixture(scope="session")
def strict_server(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with an API key, one worker and no wait queue nor waiting line (so a second request gets 429),
    voice aliases, mp3 as the default format, a rate limit and short client timeouts (tests/test_limits_e2e.py)."""
    env = {
        "API_KEY": "test-secret-key",
        "WORKERS": "1",
        "QUEUE_SIZE": "0",
        "MAX_QUEUE_WAIT": "0",
        "ALLOWED_ORIGINS": "https://app.example",
        "VOICE_ALIASES": "alloy=demo/calm,echo=demo",
        "DEFAULT_RESPONSE_FORMAT": "mp3",
        "RATE_LIMIT_PER_MINUTE": "20",
        "HEAD_TIMEOUT": "3",
        "BODY_TIMEOUT": "3",
        "SEND_TIMEOUT": "5",
    }
    process = start_demo_server("strict", tmp_path_factory.mktemp("empty-models"), env, while_loading=probe_while_loading)
    yield process
    process.stop()


def probe_while_loading(server: ServerProcess, health: httpx.Response) -> None:
    """Once, while the voices load: what /health and a speech request get then (tests/test_limits_e2e.py reads it)."""
    if server.seen_while_loading:
        return
    speech = httpx.post(
        f"{server.base_url}{SPEECH}",
        json={"model": "demo", "input": "こんにちは"},
        headers={"authorization": "Bearer test-secret-key"},
        timeout=10,
    )
    server.seen_while_loading.append(("health", health.status_code, health.json()))
    server.seen_while_loading.append(("speech", speech.status_code, speech.json()))


@pytest.fixture(scope="session")
def ffprobe() -> str:
    path = shutil.which("ffprobe")
    if path is None:
        pytest.fail("ffprobe is required (install ffmpeg; scripts/test.sh does when it can)")
    return path
