"""`python tests/faulty_server.py`: server.py with one fault of a real deployment that the demo voice lacks, chosen
by FAULT, so that tests/test_spoken_e2e.py can see what a real server does with it:

- FAULT=g2p: G2P raises IndexError on text with 嗯, as Genie's Chinese G2P does on some interjections in tone
  sandhi (ours reads the known cases, and the demo's stand-in G2P data reads them all);
- FAULT=token_cap: the token cap is one token per phoneme, half what the demo voice takes (2 per phoneme), as a
  voice that never emits EOS would meet it.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.synthesis import vocoding  # noqa: E402
from engine.text import g2p  # noqa: E402  (after the checkout is on the path)

FAULT = os.environ["FAULT"]
if FAULT == "g2p":
    readable = g2p.text_to_phonemes

    def fragile(text: str, language: str, *args: object, **options: object) -> g2p.Phonemes:
        if "嗯" in text:
            raise IndexError("list index out of range")
        return readable(text, language, *args, **options)  # type: ignore[arg-type]

    g2p.text_to_phonemes = fragile  # before engine.synthesis.speech imports it
elif FAULT == "token_cap":
    vocoding.TOKENS_PER_PHONEME_CAP, vocoding.TOKEN_CAP_FLOOR = 1, 1
else:
    raise SystemExit(f"unknown FAULT={FAULT!r}")
runpy.run_path(str(ROOT / "server.py"), run_name="__main__")
