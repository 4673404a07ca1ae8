"""Genie-TTS called directly (`genie_tts.tts` to a file): synthesis time with no HTTP and no scheduling.

Usage: python -m bench.genie_direct GENIE_DATA_DIR VOICE_DIR JOB_JSON SCRATCH_DIR
JOB_JSON: {"texts": {name: text}, "repeats", "language" (Genie's name or code), "warmup" (a text spoken first, untimed)}.
Prints one JSON line: {text name: [{"total_s", "audio_s"}, ...]}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import soundfile as sf

from engine.genie import import_genie


def main() -> None:
    genie_data, voice_dir, job_path, scratch = (Path(arg) for arg in sys.argv[1:5])
    genie = import_genie(genie_data)
    job = json.loads(job_path.read_text(encoding="utf-8"))
    reference = json.loads((voice_dir / "reference" / "config.json").read_text(encoding="utf-8"))
    genie.load_character("demo", str(voice_dir / "tts_models"), job["language"])
    genie.set_reference_audio("demo", str(voice_dir / "reference" / "audio.wav"), reference["text"], job["language"])
    out = scratch / "genie-direct.wav"
    genie.tts("demo", job["warmup"], split_sentence=True, save_path=str(out))
    results: dict[str, list[dict]] = {}
    for name, text in job["texts"].items():
        for _ in range(job["repeats"]):
            started = time.perf_counter()
            genie.tts("demo", text, split_sentence=True, save_path=str(out))
            total = time.perf_counter() - started
            info = sf.info(str(out))
            results.setdefault(name, []).append({"total_s": total, "audio_s": info.frames / info.samplerate})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
