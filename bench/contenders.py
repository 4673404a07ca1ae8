"""The systems under test, each a real process started and stopped by the benchmark.

* `OurServer`: `python server.py` serving the demo voice (plus copies of it, for the 3-voice figures).
* `GenieServer`: Genie-TTS's own FastAPI app (`genie_tts.Server.app`) under uvicorn, with the same
  voice registered through its HTTP API.
* `run_genie_direct`: `genie_tts.tts(...)` to a file, in its own process, for synthesis time without HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VOICE_LANGUAGE = "ja"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def voice_folders(voice_dir: Path, count: int, scratch: Path) -> Path:
    """A models folder with `count` voices, all links to the demo voice (separate sessions, same files)."""
    models = scratch / f"models-{count}"
    models.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        link = models / ("demo" if index == 0 else f"demo{index + 1}")
        if not link.exists():
            link.symlink_to(voice_dir, target_is_directory=True)
    return models


@dataclass
class Running:
    process: subprocess.Popen
    base_url: str
    cold_start_s: float

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_http(process: subprocess.Popen, url: str, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s} s; see {log}")


class OurServer:
    name = "ours"
    header_bytes = 44

    def __init__(self, voice_dir: Path, genie_data: Path, scratch: Path) -> None:
        self.voice_dir, self.genie_data, self.scratch = voice_dir, genie_data, scratch

    def start(self, voices: int, settings: dict[str, str] | None = None) -> Running:
        port = free_port()
        log = self.scratch / f"ours-{voices}v.log"
        models = voice_folders(self.voice_dir, voices, self.scratch)
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "MODELS_DIR": str(models),
            "GENIE_DATA_DIR": str(self.genie_data),
            "GENIE_DOWNLOAD": "0",
            "DEMO": "0",
            **(settings or {}),
        }
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "server.py"], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        _wait_http(process, f"{base}/health", log)
        return Running(process, base, time.monotonic() - started)

    @staticmethod
    def request(running: Running, text: str, voice: str = "demo") -> tuple[str, dict]:
        return f"{running.base_url}/v1/audio/speech", {"model": voice, "input": text, "response_format": "wav"}


class GenieServer:
    name = "genie_server"
    header_bytes = 0  # its body is raw PCM (labelled audio/wav)

    def __init__(self, voice_dir: Path, genie_data: Path, scratch: Path) -> None:
        self.voice_dir, self.genie_data, self.scratch = voice_dir, genie_data, scratch

    def start(self, voices: int) -> Running:
        port = free_port()
        log = self.scratch / f"genie-server-{voices}v.log"
        models = voice_folders(self.voice_dir, voices, self.scratch)
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.genie_server", str(self.genie_data), str(port)],
            cwd=ROOT,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        _wait_http(process, f"{base}/docs", log)
        for voice in sorted(path.name for path in models.iterdir()):
            folder = models / voice
            reference = json.loads((folder / "reference" / "config.json").read_text(encoding="utf-8"))
            loaded = httpx.post(
                f"{base}/load_character",
                json={"character_name": voice, "onnx_model_dir": str(folder / "tts_models"), "language": VOICE_LANGUAGE},
                timeout=300,
            )
            loaded.raise_for_status()
            httpx.post(
                f"{base}/set_reference_audio",
                json={
                    "character_name": voice,
                    "audio_path": str(folder / "reference" / "audio.wav"),
                    "audio_text": reference["text"],
                    "language": VOICE_LANGUAGE,
                },
                timeout=60,
            ).raise_for_status()
        return Running(process, base, time.monotonic() - started)

    @staticmethod
    def request(running: Running, text: str, voice: str = "demo") -> tuple[str, dict]:
        return f"{running.base_url}/tts", {"character_name": voice, "text": text, "split_sentence": True}


def run_genie_direct(
    voice_dir: Path, genie_data: Path, texts: dict[str, str], repeats: int, scratch: Path
) -> dict[str, list[dict]]:
    """Time `genie_tts.tts` per text in a separate process; {text name: [{"total_s", "audio_s"}, ...]}."""
    job = scratch / "genie-direct.json"
    job.write_text(json.dumps({"texts": texts, "repeats": repeats}, ensure_ascii=False), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "bench.genie_direct", str(genie_data), str(voice_dir), str(job), str(scratch)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"genie direct run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
