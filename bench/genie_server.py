"""Genie-TTS's own server, as its users run it: `genie_tts.Server.app` under uvicorn.

Usage: python -m bench.genie_server GENIE_DATA_DIR PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from engine.genie import import_genie


def main() -> None:
    import_genie(Path(sys.argv[1]))
    from genie_tts.Server import app

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")


if __name__ == "__main__":
    main()
