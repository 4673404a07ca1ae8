"""Serve a local stand-in of the Hugging Face repo High-Logic/Genie for the image's build-time downloads.

Why: the hub is unreachable in CI, yet the Dockerfile's default path (GenieData and a predefined voice fetched at
build time by the server's own code) must be exercised for real. The repo holds stand-in GenieData and a
`CharacterModels/v2ProPlus/mika/` in Genie's layout, both made from the demo voice, so the built image boots
without DEMO and serves `mika` through the ordinary code path.

It serves the repo at the pinned revision (engine/models/hub.py: HF_REVISION) only, so the image build proves that
its downloads ask for that revision.

Usage: python .ci/hub-standin.py DIR  (prints the URL for HF_ENDPOINT on its first line, serves until killed)
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.models.hub import HF_REPO, HF_REVISION  # noqa: E402
from engine.tools import demo  # noqa: E402
from tests.hub_standin import serve_repo  # noqa: E402


def make_repo(work: Path) -> Path:
    voice, genie_data = demo.ensure_demo(work / "demo")
    repo = work / "repo"
    shutil.copytree(genie_data, repo / "GenieData")
    mika = repo / "CharacterModels" / "v2ProPlus" / "mika"
    shutil.copytree(voice / "tts_models", mika / "tts_models")
    (mika / "prompt_wav").mkdir(parents=True)
    shutil.copyfile(voice / "reference" / "audio.wav", mika / "prompt_wav" / "normal.wav")
    prompts = {"Normal": {"text": demo.REFERENCE_TEXT, "wav": "normal.wav"}}
    (mika / "prompt_wav.json").write_text(json.dumps(prompts, ensure_ascii=False), encoding="utf-8")
    return repo


def main() -> None:
    repo = make_repo(Path(sys.argv[1]))
    with serve_repo(repo, HF_REPO, HF_REVISION) as hub:
        print(hub.url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
