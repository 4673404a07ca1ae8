"""The voices this server serves, looked up by name only (no request field ever reaches the filesystem)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from engine.allocator import release_freed_memory
from engine.models.model_cache import ModelCache
from engine.models.sessions import SessionLoader
from engine.text.languages import NAMES
from engine.voices.reference_cache import ReferenceCache
from engine.voices.voice import GenieDataBroken, SharedModels, Voice, load_voice
from engine.voices.voice_folder import VoiceError, VoiceFolder

logger = logging.getLogger("gsv.voices")


class VoiceRegistry:
    def __init__(self, voices: Iterable[Voice] = (), load_seconds: Mapping[str, float] | None = None) -> None:
        self._voices: dict[str, Voice] = {voice.name: voice for voice in voices}
        self._folded = {name.casefold(): voice for name, voice in self._voices.items()}
        self.load_seconds = dict(load_seconds or {})  # voice name -> seconds its loading took (its log line's load_s)

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
    folders: Iterable[tuple[str, VoiceFolder | VoiceError]],
    genie_data_dir: Path,
    threads: int,
    cache_dir: Path | None = None,
    t2s_precision: str = "fp32",
) -> VoiceRegistry:
    """Load every valid folder; report and skip the broken ones so the others still serve.

    Anything raised outside one voice's own loading (GenieDataBroken among them) propagates: the start-up has failed.

    With `cache_dir`, optimised graphs (cache_dir/models) and reference features (cache_dir/references) are
    written once and reused by later starts; the start-up-only models are released at the end either way.
    """
    model_cache = ModelCache(cache_dir / "models") if cache_dir is not None else None
    if model_cache is not None:
        model_cache.remove_abandoned()
    loader = SessionLoader(threads, model_cache)
    references = ReferenceCache(cache_dir / "references") if cache_dir is not None else None
    shared = SharedModels.load(genie_data_dir, threads, loader)
    voices = []
    load_seconds: dict[str, float] = {}
    for name, folder in folders:
        if isinstance(folder, VoiceError):
            logger.error("voice=%s outcome=skipped reason=%s", name, folder)
            continue
        for warning in folder.warnings:
            logger.warning("voice=%s warning=%r", name, warning)
        started = time.perf_counter()
        misses = references.misses if references is not None else 0
        try:
            voices.append(load_voice(folder, shared, threads, loader=loader, references=references, t2s_precision=t2s_precision))
        except GenieDataBroken:  # not this voice's fault: every voice needs GenieData, so start-up has failed
            raise
        except Exception as error:  # onnxruntime and G2P raise many types; one bad voice must not stop the rest
            logger.error("voice=%s outcome=skipped reason=%r", name, f"failed to load: {error}")
            continue
        finally:
            gc.collect()
            release_freed_memory()  # the prompt encoder and load-time buffers of this voice
        load_seconds[name] = time.perf_counter() - started
        logger.info(
            "voice=%s outcome=loaded kind=%s language=%s t2s=%s load_s=%.1f references=%s",
            name,
            folder.kind,
            NAMES[folder.language],
            t2s_precision,
            load_seconds[name],
            "cached" if references is not None and references.misses == misses else "computed",
        )
    shared.release()
    gc.collect()
    release_freed_memory()
    return VoiceRegistry(voices, load_seconds)
