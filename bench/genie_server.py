"""Genie-TTS's own server, as its users run it: `genie_tts.Server.app` under uvicorn.

Usage: PORT=8000 python -m bench.genie_server GENIE_DATA_DIR (the benchmark starts it through tests/server_process.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

from engine.genie import import_genie


def main() -> None:
    import_genie(Path(sys.argv[1]))
    from genie_tts.Server import app

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")


if __name__ == "__main__":
    main()
