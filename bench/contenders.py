"""The systems under test, each a real process started and stopped by the benchmark.

* `OurServer`: `python server.py` serving the demo voice (plus copies of it, for the 3-voice figures).
* `GenieServer`: Genie-TTS's own FastAPI app (`genie_tts.Server.app`) under uvicorn, with the same
  voice registered through its HTTP API.
* `run_genie_direct`: `genie_tts.tts(...)` to a file, in its own process, for synthesis time without HTTP.

Each serves one voice folder under one name (`voice`: "demo" in the main run, "demo-zh" etc. in bench/languages.py);
Genie is told the voice's language (`language`, any name Genie's normalize_language knows).

Both servers are started by `tests/server_process.py`, the harness the tests use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.texts import WARMUPS
from tests.server_process import ROOT, ServerProcess, start_server

VOICE_LANGUAGE = "ja"


def copy_name(voice: str, index: int) -> str:
    """The name of the `index`th copy of a voice in a many-voices folder: demo, demo2, demo3, ..."""
    return voice if index == 0 else f"{voice}{index + 1}"


def voice_folders(voice_dir: Path, count: int, scratch: Path, voice: str = "demo") -> Path:
    """A models folder with `count` voices, all links to `voice_dir` (separate sessions, same files).

    A link left by an earlier contender to another folder is replaced: the folder's name says only the voice's
    name, and the languages step names its Chinese voice's folder as the main run names the Japanese one."""
    models = scratch / f"models-{voice}-{count}"
    models.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        link = models / copy_name(voice, index)
        if link.is_symlink() and link.resolve() != voice_dir.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(voice_dir, target_is_directory=True)
    return models


class OurServer:
    header_bytes = 44

    def __init__(
        self, voice_dir: Path, genie_data: Path, scratch: Path, checkout: Path = ROOT, name: str = "ours", voice: str = "demo"
    ) -> None:
        """`checkout`: the source tree whose server.py runs (another revision for a baseline, see bench/run.py)."""
        self.voice_dir, self.genie_data, self.scratch = voice_dir, genie_data, scratch
        self.checkout, self.name, self.voice = checkout, name, voice

    def start(self, voices: int, settings: dict[str, str] | None = None) -> ServerProcess:
        """With an empty CACHE_DIR of its own unless `settings` names one: a first start, as after a deployment."""
        cache = self.scratch / f"cache-{self.name}-{voices}v"
        shutil.rmtree(cache, ignore_errors=True)
        env = {
            "MODELS_DIR": str(voice_folders(self.voice_dir, voices, self.scratch, self.voice)),
            "GENIE_DATA_DIR": str(self.genie_data),
            "GENIE_DOWNLOAD": "0",
            "DEMO": "0",
            "CACHE_DIR": str(cache),
            **(settings or {}),
        }
        return start_server(self.scratch / f"{self.name}-{voices}v.log", env, cwd=self.checkout)

    @staticmethod
    def request(running: ServerProcess, text: str, voice: str = "demo") -> tuple[str, dict]:
        return f"{running.base_url}/v1/audio/speech", {"model": voice, "input": text, "response_format": "wav"}


class GenieServer:
    header_bytes = 0  # its body is raw PCM (labelled audio/wav)

    def __init__(
        self,
        voice_dir: Path,
        genie_data: Path,
        scratch: Path,
        name: str = "genie_server",
        voice: str = "demo",
        language: str = VOICE_LANGUAGE,
    ) -> None:
        self.voice_dir, self.genie_data, self.scratch = voice_dir, genie_data, scratch
        self.name, self.voice, self.language = name, voice, language

    def start(self, voices: int) -> ServerProcess:
        """Its server, then each voice registered through its HTTP API; cold start counts both."""
        models = voice_folders(self.voice_dir, voices, self.scratch, self.voice)
        command = ("-m", "bench.genie_server", str(self.genie_data))
        log = self.scratch / f"{self.name.replace('_', '-')}-{voices}v.log"
        running = start_server(log, {}, command=command, ready_path="/docs")
        base = running.base_url
        for voice in sorted(path.name for path in models.iterdir()):
            folder = models / voice
            reference = json.loads((folder / "reference" / "config.json").read_text(encoding="utf-8"))
            character = {"character_name": voice, "onnx_model_dir": str(folder / "tts_models"), "language": self.language}
            httpx.post(f"{base}/load_character", json=character, timeout=300).raise_for_status()
            httpx.post(
                f"{base}/set_reference_audio",
                json={
                    "character_name": voice,
                    "audio_path": str(folder / "reference" / "audio.wav"),
                    "audio_text": reference["text"],
                    "language": self.language,
                },
                timeout=60,
            ).raise_for_status()
        running.cold_start_s = time.monotonic() - running.started_at
        return running

    @staticmethod
    def request(running: ServerProcess, text: str, voice: str = "demo") -> tuple[str, dict]:
        return f"{running.base_url}/tts", {"character_name": voice, "text": text, "split_sentence": True}


def run_genie_direct(
    voice_dir: Path,
    genie_data: Path,
    texts: dict[str, str],
    repeats: int,
    scratch: Path,
    language: str = VOICE_LANGUAGE,
    warmup: str = WARMUPS[VOICE_LANGUAGE],
) -> dict[str, list[dict]]:
    """Time `genie_tts.tts` per text in a separate process; {text name: [{"total_s", "audio_s"}, ...]}."""
    job = scratch / "genie-direct.json"
    plan = {"texts": texts, "repeats": repeats, "language": language, "warmup": warmup}
    job.write_text(json.dumps(plan, ensure_ascii=False), encoding="utf-8")
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
