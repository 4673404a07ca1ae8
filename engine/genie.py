"""The single gateway to the `genie_tts` package.

Importing `genie_tts` has side effects (see docs/architecture.md): it reads
`GENIE_DATA_DIR` once, calls `input()` when the folder is missing, raises when
the HuBERT or speaker-encoder model is absent, and configures the root logger.
Everything in the project reaches Genie through `import_genie`, which prepares
the environment first so none of that can surprise a server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

#: Files `genie_tts` refuses to import without.
REQUIRED_DATA = ("chinese-hubert-base", "speaker_encoder.onnx")

#: We never rely on Genie's LRU caches, but size them so they cannot evict anything
#: Genie itself keeps (its model manager and reference-audio cache).
_CACHE_CAPACITY = "1000000"


class GenieDataMissing(RuntimeError):
    """GenieData is absent or incomplete; the message says what to fetch and where."""


def missing_data(data_dir: Path) -> list[str]:
    return [name for name in REQUIRED_DATA if not (data_dir / name).exists()]


def import_genie(data_dir: Path) -> ModuleType:
    """Import `genie_tts` with GenieData at `data_dir`; idempotent for the same folder."""
    data_dir = data_dir.resolve()
    if "genie_tts" in sys.modules:
        current = Path(os.environ.get("GENIE_DATA_DIR", "")).resolve()
        if current != data_dir:
            raise RuntimeError(f"genie_tts was already imported with GENIE_DATA_DIR={current}, not {data_dir}")
        return sys.modules["genie_tts"]
    absent = missing_data(data_dir)
    if absent:
        raise GenieDataMissing(f"GenieData at {data_dir} lacks {', '.join(absent)}")
    os.environ["GENIE_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("Max_Cached_Character_Models", _CACHE_CAPACITY)
    os.environ.setdefault("Max_Cached_Reference_Audio", _CACHE_CAPACITY)
    import genie_tts  # noqa: PLC0415  (deliberately late: the environment above must come first)

    return genie_tts


def package_data_dir() -> Path:
    """`genie_tts/Data` (ONNX templates and key lists), found without importing genie_tts."""
    from importlib.util import find_spec

    spec = find_spec("genie_tts")
    if spec is None or spec.origin is None:
        raise RuntimeError("genie-tts is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "Data"
