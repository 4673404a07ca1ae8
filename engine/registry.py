"""The voices this server serves, looked up by name only (no request field ever reaches the filesystem)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.voice import SharedModels, Voice, load_voice
from engine.voice_folder import VoiceError, VoiceFolder

logger = logging.getLogger("gsv.voices")


class VoiceRegistry:
    def __init__(self, voices: Iterable[Voice] = ()) -> None:
        self._voices: dict[str, Voice] = {voice.name: voice for voice in voices}
        self._folded = {name.casefold(): voice for name, voice in self._voices.items()}

    @property
    def names(self) -> list[str]:
        return sorted(self._voices)

    def __len__(self) -> int:
        return len(self._voices)

    def __iter__(self) -> Iterator[Voice]:
        """The voices in name order."""
        return iter(sorted(self._voices.values(), key=lambda voice: voice.name))

    def get(self, name: object) -> Voice | None:
        if not isinstance(name, str):
            return None
        return self._voices.get(name) or self._folded.get(name.casefold())

    def only(self) -> Voice | None:
        return next(iter(self._voices.values())) if len(self._voices) == 1 else None


def load_voices(
    folders: Iterable[tuple[str, VoiceFolder | VoiceError]], genie_data_dir: Path, threads: int, t2s_precision: str = "fp32"
) -> VoiceRegistry:
    """Load every valid folder; report and skip the broken ones so the others still serve."""
    shared = SharedModels.load(genie_data_dir, threads)
    voices = []
    for name, folder in folders:
        if isinstance(folder, VoiceError):
            logger.error("voice=%s outcome=skipped reason=%s", name, folder)
            continue
        for warning in folder.warnings:
            logger.warning("voice=%s warning=%r", name, warning)
        started = time.perf_counter()
        try:
            voices.append(load_voice(folder, shared, threads, t2s_precision))
        except Exception as error:  # onnxruntime and G2P raise many types; one bad voice must not stop the rest
            logger.error("voice=%s outcome=skipped reason=%r", name, f"failed to load: {error}")
            continue
        logger.info(
            "voice=%s outcome=loaded kind=%s language=%s t2s=%s load_s=%.1f",
            name,
            folder.kind,
            folder.language,
            t2s_precision,
            time.perf_counter() - started,
        )
    return VoiceRegistry(voices)
