"""End to end, on real `python server.py` processes: what an orchestrator sees when a start-up fails or is stopped.

- GenieData that does not load (a truncated speaker encoder) ends the process with status 1 and a log line
  naming the file, instead of a server stuck at 503 whose /livez stays 200.
- SIGTERM ends the process within seconds while the voices load (a cold model cache), while the demo voice
  builds and while GenieData downloads from a slow hub. The image runs the server as PID 1, which ignores a
  signal it has no handler for; these run it as PID 1 of a PID namespace of its own (`unshare`), as there.
- A build killed midway leaves its scratch folder behind; the next start removes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.models.hub import HF_REPO, HF_REVISION
from engine.voices.demo_voices import BUILD_VERSION
from tests.helpers import CACHE, OUTPUT, wait_for
from tests.hub_standin import serve_repo
from tests.server_process import ROOT, free_port

pytestmark = pytest.mark.e2e

#: How long a stopped server may take to exit. Today's defects take far longer: the drain (5 s) and then the
#: whole cold load (about 20 s a voice), the whole download, or forever (PID 1 ignoring SIGTERM).
EXIT_WITHIN = 12


class Launched:
    """`python server.py` started in the background, optionally as PID 1 of its own PID namespace."""

    def __init__(self, name: str, env: dict[str, str], tmp_path: Path, as_pid1: bool = False) -> None:
        self.log_path = OUTPUT / f"server-startup-{name}-{os.getpid()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        base = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
        full_env = {
            **base,
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
            "MODELS_DIR": str(tmp_path / "no-models"),
            "GENIE_DOWNLOAD": "0",
            **env,
        }
        (tmp_path / "no-models").mkdir(exist_ok=True)
        prefix = ["unshare", "--pid", "--fork", "--kill-child"] if as_pid1 else []
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "server.py"], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
            )
        self.as_pid1 = as_pid1

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def server_pid(self) -> int:
        """The server's own process: unshare's child when it is PID 1 of a namespace (signals go to it, not unshare)."""
        if not self.as_pid1:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        wait_for(lambda: children.read_text().split() != [], 10, "unshare's child started")
        return int(children.read_text().split()[0])

    def signal_and_time_exit(self, sig: int, timeout: float = EXIT_WITHIN) -> tuple[int, float]:
        """Send `sig` to the server; its exit status and how long it took to exit (fails after `timeout`)."""
        os.kill(self.server_pid(), sig)
        sent = time.monotonic()
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            name = signal.Signals(sig).name
            raise AssertionError(f"the server was still running {timeout} s after {name}:\n{self.log()}") from None
        return status, time.monotonic() - sent

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def launched() -> Iterator[list[Launched]]:
    started: list[Launched] = []
    yield started
    for server in started:
        server.stop()


def demo_cache(tmp_path: Path, demo_root: Path) -> Path:
    """A CACHE_DIR holding the built demo voices (linked, not rebuilt) and no model cache yet: a cold load."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"demo-{BUILD_VERSION}").symlink_to(demo_root.resolve(), target_is_directory=True)
    return cache


def scratch_folders(folder: Path) -> set[str]:
    return {path.name for path in folder.glob(".*") if path.is_dir()} if folder.is_dir() else set()


def test_genie_data_that_does_not_load_ends_the_process_with_status_1(
    demo_root: Path, tmp_path: Path, launched: list[Launched]
) -> None:
    """A truncated speaker encoder fails every voice: today each is skipped, and the server answers 503
    "no_voices" and /livez 200 for ever, so nothing restarts it."""
    genie_data = tmp_path / "GenieData"
    shutil.copytree(demo_root / "GenieData", genie_data)
    encoder = genie_data / "speaker_encoder.onnx"
    os.truncate(encoder, encoder.stat().st_size // 2)
    env = {"DEMO": "1", "DEMO_VOICES": "demo", "CACHE_DIR": str(CACHE), "GENIE_DATA_DIR": str(genie_data)}
    server = Launched("genie-data-broken", env, tmp_path)
    launched.append(server)
    try:
        status = server.process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the server is still running with unloadable GenieData:\n{server.log()}") from None
    log = server.log()
    assert status == 1, log
    failed = [line for line in log.splitlines() if "start-up failed" in line]
    assert failed and str(encoder) in failed[0], log
    assert "exiting with status 1" in log


def test_sigterm_while_the_voices_load_ends_the_process_within_seconds(
    demo_root: Path, tmp_path: Path, launched: list[Launched]
) -> None:
    """Four demo voices on a cold model cache load for a minute or more; with the default drain (5 s), a SIGTERM
    in the middle of it today waits for the drain and then for the whole load."""
    cache = demo_cache(tmp_path, demo_root)
    env = {"DEMO": "1", "DEMO_VOICES": "demo,demo-zh,demo-en,demo-ko", "CACHE_DIR": str(cache), "DRAIN_SECONDS": "5"}
    server = Launched("sigterm-loading", env, tmp_path, as_pid1=True)
    launched.append(server)
    wait_for(lambda: "model cache: wrote" in server.log(), 120, "the load under way (a first cache entry written)")
    assert "voice=demo-zh outcome=loaded" not in server.log()  # most of the load is still to come
    status, seconds = server.signal_and_time_exit(signal.SIGTERM)
    log = server.log()
    assert status == 0, log
    assert "stopped while the voices were loading" in log
    assert "draining" not in log  # nothing to drain: /health was 503 "loading" all along
    print(f"exit after SIGTERM while loading: {seconds:.1f} s")


def test_sigterm_during_the_demo_build_ends_pid_1_and_the_next_start_removes_its_scratch(
    tmp_path: Path, launched: list[Launched]
) -> None:
    """Before uvicorn runs, no handler is installed today: PID 1 ignores SIGTERM and builds on. The build it
    leaves midway (a scratch folder) is removed by the next start."""
    cache = tmp_path / "cache"
    demo = cache / f"demo-{BUILD_VERSION}"
    env = {"DEMO": "1", "DEMO_VOICES": "demo,demo-zh,demo-en,demo-ko", "CACHE_DIR": str(cache), "DRAIN_SECONDS": "0"}
    server = Launched("sigterm-demo-build", env, tmp_path, as_pid1=True)
    launched.append(server)
    wait_for(lambda: bool(scratch_folders(demo)), 120, "the demo build under way (a scratch folder)")
    status, seconds = server.signal_and_time_exit(signal.SIGTERM)
    log = server.log()
    assert status == 0, log
    assert "stopped by SIGTERM during start-up" in log
    left = scratch_folders(demo)
    assert left, "the build was stopped midway: its scratch folder is still there"
    print(f"exit after SIGTERM during the demo build: {seconds:.1f} s")

    again = Launched("after-demo-build", env, tmp_path)
    launched.append(again)
    wait_for(lambda: (demo / "demo-ko" / "reference").is_dir(), 180, "the demo voices built by the second start")
    assert not left & scratch_folders(demo), f"scratch folders of the stopped build are still there: {left}"
    again.signal_and_time_exit(signal.SIGTERM)


def test_sigterm_during_the_genie_data_download_ends_pid_1_within_seconds(
    demo_root: Path, tmp_path: Path, launched: list[Launched]
) -> None:
    """GenieData (here the demo's stand-in, 5 MB) from a hub that sends 50 kB/s: a download of minutes."""
    repo = tmp_path / "hub-repo"
    shutil.copytree(demo_root / "GenieData", repo / "GenieData")
    with serve_repo(repo, HF_REPO, HF_REVISION) as hub:
        hub.bytes_per_second = 50_000
        env = {
            "GENIE_DOWNLOAD": "1",
            "GENIE_DATA_DIR": str(tmp_path / "GenieData"),
            "CACHE_DIR": str(tmp_path / "cache"),
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        server = Launched("sigterm-download", env, tmp_path, as_pid1=True)
        launched.append(server)
        wait_for(lambda: any("/resolve/" in request for request in hub.requests), 60, "a file download under way")
        time.sleep(1)
        status, seconds = server.signal_and_time_exit(signal.SIGTERM)
    log = server.log()
    assert status == 0, log
    assert "genie_data=downloading" in log and "stopped by SIGTERM during start-up" in log
    assert not (tmp_path / "GenieData").exists()  # nothing half-downloaded where the server would take it for whole
    print(f"exit after SIGTERM during the download: {seconds:.1f} s")


def test_a_model_cache_build_killed_midway_leaves_no_scratch_folder_after_the_next_start(
    demo_root: Path, tmp_path: Path, launched: list[Launched]
) -> None:
    cache = demo_cache(tmp_path, demo_root)
    models = cache / "models"
    env = {"DEMO": "1", "DEMO_VOICES": "demo", "CACHE_DIR": str(cache), "DRAIN_SECONDS": "0"}
    first = Launched("cache-killed", env, tmp_path)
    launched.append(first)
    wait_for(lambda: bool(scratch_folders(models)), 120, "a model cache entry being built (a scratch folder)")
    first.signal_and_time_exit(signal.SIGKILL)
    left = scratch_folders(models)
    assert left, "killed midway: the scratch folder is still there"

    second = Launched("cache-restarted", env, tmp_path)
    launched.append(second)
    wait_for(lambda: not left & scratch_folders(models), 60, f"the killed build's scratch folders {left} removed")
    wait_for(lambda: "scratch folder(s) of interrupted builds" in second.log(), 10, "the removal logged")
    status, _ = second.signal_and_time_exit(signal.SIGTERM)
    assert status == 0, second.log()
