"""The single gateway to the `genie_tts` package: no other module of the project imports it.

Importing `genie_tts` has side effects (see docs/architecture.md): it reads `GENIE_DATA_DIR` once, calls
`input()` when the folder is missing, raises when the HuBERT or speaker-encoder model is absent, and
configures the root logger. `import_genie` prepares the environment first so none of that can surprise a
server; the functions below are the few stateless parts of Genie we use, and each refuses to run before
`import_genie` (importing any `genie_tts` submodule would run those side effects).

The benchmark (bench/) is the one exception: it measures Genie's own server and player, which it imports
after `import_genie`.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Docker build imports this module to fetch GenieData, before anything heavy is needed
    import numpy as np
    import onnxruntime

#: Files `genie_tts` refuses to import without.
REQUIRED_DATA = ("chinese-hubert-base", "speaker_encoder.onnx")

#: We never rely on Genie's LRU caches, but size them so they cannot evict anything
#: Genie itself keeps (its model manager and reference-audio cache).
_CACHE_CAPACITY = "1000000"


class GenieDataMissing(RuntimeError):
    """GenieData is absent or incomplete; the message says what to fetch and where."""


def missing_data(data_dir: Path) -> list[str]:
    """The required files absent from `data_dir`. A folder this process may not read raises `GenieDataMissing`
    naming the first path it cannot read and the `chmod` that fixes it, rather than a bare `PermissionError`."""
    try:
        absent = [name for name in REQUIRED_DATA if not (data_dir / name).exists()]
        unreadable = None if absent else first_unreadable(data_dir)
    except PermissionError as error:
        unreadable = Path(error.filename) if error.filename else data_dir
    if unreadable is not None:
        raise GenieDataMissing(unreadable_message(data_dir, unreadable))
    return absent


def first_unreadable(data_dir: Path) -> Path | None:
    """The first file or folder under `data_dir` this process may not read (folders: list and enter), or None.

    Checked up front because Genie's import and G2P read these files later, where a `PermissionError` would end
    the start-up with a traceback (a container's user is often not the one who copied GenieData in)."""
    failures: list[OSError] = []
    for folder, folders, files in os.walk(data_dir, onerror=failures.append):
        if not os.access(folder, os.R_OK | os.X_OK):
            return Path(folder)
        for name in files:
            path = Path(folder, name)
            if not os.access(path, os.R_OK) and path.exists():  # path.exists(): a dangling link is not ours to judge
                return path
        folders.sort()
    for failure in failures:
        if isinstance(failure, PermissionError):
            return Path(failure.filename) if failure.filename else data_dir
    return None


def unreadable_message(data_dir: Path, path: Path) -> str:
    user = f"user id {os.getuid()}" if hasattr(os, "getuid") else "this user"
    return (
        f"GenieData at {data_dir} is not readable by the server ({user}): permission denied on {path}. "
        f"Make it readable for every user with `chmod -R a+rX {data_dir}` (in a container, on the host folder "
        "that is mounted), or copy it to a folder of the server's own user and point GENIE_DATA_DIR there"
    )


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
    from importlib.util import find_spec  # noqa: PLC0415

    spec = find_spec("genie_tts")
    if spec is None or spec.origin is None:
        raise RuntimeError("genie-tts is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "Data"


def _require_imported() -> None:
    if "genie_tts" not in sys.modules:
        raise RuntimeError("genie_tts is not imported yet: call engine.genie.import_genie(GenieData folder) first")


def phones_and_bert(text: str, language: str) -> tuple[np.ndarray, np.ndarray]:
    """Genie's G2P: phoneme ids int64 [1, n] and BERT features float32 [n, 1024]. Not thread-safe (see g2p.py)."""
    _require_imported()
    from genie_tts.GetPhonesAndBert import get_phones_and_bert  # noqa: PLC0415

    return get_phones_and_bert(text, language=language.lower())


def symbol_table() -> list[str]:
    """The V2 phoneme symbols: phoneme id -> its name."""
    _require_imported()
    from genie_tts.G2P.SymbolsV2 import symbols_v2  # noqa: PLC0415

    return symbols_v2


def load_audio(path: Path, sample_rate: int) -> np.ndarray | None:
    """Genie's reference loader: mono float32 at `sample_rate` (soxr), 0.3 s of silence appended; None if unreadable."""
    _require_imported()
    from genie_tts.Audio.Audio import load_audio as genie_load_audio  # noqa: PLC0415

    return genie_load_audio(str(path), target_sampling_rate=sample_rate)


def load_fp16_session(
    model: Path, fp16_weights: Path, providers: list[str], options: onnxruntime.SessionOptions
) -> onnxruntime.InferenceSession:
    """A template graph whose weights live in a separate fp16 file, expanded to fp32 in memory."""
    _require_imported()
    from genie_tts.ModelManager import load_session_with_fp16_conversion  # noqa: PLC0415

    return load_session_with_fp16_conversion(str(model), str(fp16_weights), providers, options)


def convert_to_onnx(ckpt: Path, pth: Path, output_dir: Path, scratch: Path) -> None:
    """Genie's converter, with its scratch folder at `scratch`. It logs and swallows its own errors: check its output.

    Its scratch folder is fixed at import as ./Cache in the working directory and deleted after every
    conversion, which would take a user's own ./Cache folder with it.
    """
    _require_imported()
    modules = [importlib.import_module(f"genie_tts.Converter.{kind}.Converter") for kind in ("v2", "v2ProPlus")]
    saved = [module.CACHE_DIR for module in modules]
    for module in modules:
        module.CACHE_DIR = str(scratch)
    try:
        sys.modules["genie_tts"].convert_to_onnx(torch_ckpt_path=ckpt, torch_pth_path=pth, output_dir=output_dir)
    finally:
        for module, value in zip(modules, saved, strict=True):
            module.CACHE_DIR = value
