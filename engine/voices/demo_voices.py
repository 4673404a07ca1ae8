"""The generated demo voices (DEMO=1): their names, where a finished build of them is, and building one in a process
of its own.

The builder (engine/tools/demo.py: Genie's graph templates with random weights, the length rule, the quantizer,
the stand-in G2P data) is an offline tool. A server runs it as `python -m engine.tools.demo` in a child process,
and only when the build it needs is not there yet: the server's own process never imports it, and whatever memory
a build takes is handed back when the child ends.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from engine.genie import missing_data
from engine.models.model_files import T2S_DECODERS
from engine.models.scratch import remove_abandoned
from engine.voices.voice_folder import G2P_DATA

logger = logging.getLogger("gsv.demo")

#: Bump when the builder's output changes, so cached builds are rebuilt.
BUILD_VERSION = "4"
#: Semantic tokens per phoneme the demo voices' length rule stops at (engine/tools/demo.py).
TOKENS_PER_PHONEME = 2
#: Every demo voice: name -> (reference transcript, its language). "demo" comes first: the others reuse its weights.
DEMO_VOICES = {
    "demo": ("こんにちは、今日はとてもいい天気ですね。", "ja"),
    "demo-zh": ("你好，今天天气很好，我们一起去公园散步吧。", "zh"),
    "demo-en": ("Hello, the weather is lovely today, so let us walk in the park.", "en"),
    "demo-ko": ("안녕하세요, 오늘은 날씨가 정말 좋네요. 같이 산책할까요?", "ko"),
}
#: The file a finished voice build holds, with `stamp()`'s text.
STAMP_FILE = ".demo-build"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def build_root(cache_dir: Path) -> Path:
    return cache_dir / f"demo-{BUILD_VERSION}"


def stamp(tokens_per_phoneme: int = TOKENS_PER_PHONEME) -> str:
    """What a finished build records: BUILD_VERSION alone for the default rate (the demo's cache as it always was)."""
    if tokens_per_phoneme == TOKENS_PER_PHONEME:
        return BUILD_VERSION
    return f"{BUILD_VERSION} tokens_per_phoneme={tokens_per_phoneme}"


def stand_in_data_ready(genie_data_dir: Path) -> bool:
    """Whether the stand-in GenieData is whole: what Genie needs to import, and the G2P data of each language."""
    return not missing_data(genie_data_dir) and all((genie_data_dir / folder).is_dir() for folder in G2P_DATA.values())


def voice_built(voice_dir: Path, tokens_per_phoneme: int = TOKENS_PER_PHONEME) -> bool:
    path = voice_dir / STAMP_FILE
    return path.is_file() and path.read_text() == stamp(tokens_per_phoneme)


def int8_built(voice_dir: Path) -> bool:
    return all((voice_dir / "tts_models" / name).is_file() for name in T2S_DECODERS["int8"])


def ensure_demo_voices(
    root: Path, names: Iterable[str], int8: bool = False, g2p_data: Path | None = None
) -> tuple[dict[str, Path], Path]:
    """({name: voice folder}, stand-in GenieData folder) of a finished build under `root`, built first if needed.

    `g2p_data`: the GenieData whose G2P reads the reference transcripts for the length rule (the real one when the
    server has it); None: the stand-in.
    """
    names = list(names)
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    remove_abandoned(root)  # scratch folders of a build killed midway
    voices = {name: root / name for name in names}
    built = all(voice_built(root / name) and (not int8 or int8_built(root / name)) for name in ["demo", *names])
    if not (built and stand_in_data_ready(root / "GenieData")):
        command = [sys.executable, "-m", "engine.tools.demo", str(root), "--voices", ",".join(names)]
        command += ["--int8"] * int8 + (["--g2p-data", str(g2p_data.resolve())] if g2p_data else [])
        logger.info("building the demo voices %s in %s", ", ".join(names), root)
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
            raise RuntimeError(f"building the demo voices failed (`{' '.join(command[1:])}`):\n{tail}")
        logger.info("demo voices built: %s", result.stdout.strip().splitlines()[-1:])
    return voices, root / "GenieData"
