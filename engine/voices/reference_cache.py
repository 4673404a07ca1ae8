"""Reference features (HuBERT SSL, speaker conditioning, phonemes, BERT) kept in CACHE_DIR between starts.

They are computed once per reference clip with HuBERT, the speaker encoder and the voice's prompt encoder,
models a running server never needs again. With them cached, a warm start loads none of those models. An entry
is keyed by the clip's bytes, its transcript and language, the model files that computed it and the G2P
package's version; it is one .npz written atomically, and an unreadable entry is recomputed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from engine.models.model_cache import file_digest

logger = logging.getLogger("gsv.reference_cache")

#: Bump when what is stored, or how it is computed, changes.
FORMAT_VERSION = "1"
REQUIRED = ("phonemes", "bert", "ssl", "audio_32k")
OPTIONAL = ("ge", "ge_advanced")


def _genie_version() -> str:
    try:
        return version("genie-tts")
    except PackageNotFoundError:
        return "unknown"


class ReferenceCache:
    """Entries under `root` (CACHE_DIR/references). Never raises on a cache problem: it logs and computes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._digests: dict[tuple[Path, int, int], str] = {}
        self._writable = True
        self.misses = 0  # entries not found or unreadable, so computed (the load log says which)

    def key(self, audio: Path, text: str, language: str, models: Iterable[Path]) -> str:
        digest = hashlib.sha256(f"format={FORMAT_VERSION} genie={_genie_version()}".encode())
        for part in (self._digest(audio), text, language, *(self._digest(model) for model in models)):
            digest.update(b"\0" + part.encode())
        return digest.hexdigest()[:40]

    def _digest(self, path: Path) -> str:
        """Content hash, remembered for this process (HuBERT's weights are the same for every voice)."""
        stat = path.stat()
        memo = (path.resolve(), stat.st_size, stat.st_mtime_ns)
        if memo not in self._digests:
            self._digests[memo] = file_digest(path)
        return self._digests[memo]

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        arrays = self._read(self.root / f"{key}.npz")
        if arrays is None:
            self.misses += 1
        return arrays

    def _read(self, path: Path) -> dict[str, np.ndarray] | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except Exception as error:  # zipfile, numpy and OS errors alike: a damaged entry is recomputed
            logger.warning("reference cache entry %s is unreadable (%r): recomputing it", path.name, error)
            return None
        if any(name not in arrays for name in REQUIRED):
            logger.warning("reference cache entry %s is incomplete: recomputing it", path.name)
            return None
        return arrays

    def store(self, key: str, arrays: dict[str, np.ndarray | None]) -> None:
        if not self._writable:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle, scratch = tempfile.mkstemp(prefix=f".{key[:12]}-", suffix=".npz", dir=self.root)
            try:
                with os.fdopen(handle, "wb") as file:
                    np.savez(file, **{name: value for name, value in arrays.items() if value is not None})
                os.replace(scratch, self.root / f"{key}.npz")
            except BaseException:
                Path(scratch).unlink(missing_ok=True)
                raise
        except OSError as error:
            logger.warning("reference cache off: cannot write to %s (%s); features are computed at every start", self.root, error)
            self._writable = False
