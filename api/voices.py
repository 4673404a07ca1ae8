"""The voices this application serves, and which voice and style a request means by its `model` and `voice`.

Names are only ever looked up in the loaded registry: no request field reaches the filesystem.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from api.errors import ApiError, bad_request
from api.speech_request import is_openai_model
from engine.interface import FoundVoices, Voice, VoiceRegistry, load_voices

logger = logging.getLogger("gsv.server")

#: OpenAI's built-in voice names. Clients send them and often cannot change them: they mean "the default".
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin", "cedar"}
)


@dataclass(frozen=True)
class VoiceChoice:
    voice: Voice
    style: str | None  # None: the voice's default reference clip

    @property
    def id(self) -> str:
        return voice_id(self.voice.name, self.style)


def voice_id(name: str, style: str | None) -> str:
    """The id /v1/audio/voices lists and `voice` accepts: "<voice>" or "<voice>/<style>"."""
    return f"{name}/{style}" if style else name


def choose_voice(registry: VoiceRegistry, model: str, requested: str | None, aliases: Mapping[str, str]) -> VoiceChoice:
    """`voice` picks the voice when it names a served one ("<voice>" or "<voice>/<style>", the ids
    /v1/audio/voices lists, or an alias of one), whatever `model` says: clients such as Open WebUI keep one
    `model` and offer every listed voice. Otherwise `model` names the voice (or is an OpenAI model name) and
    `voice` is one of its styles or an OpenAI voice name (the default clip).

    Unknown model: 404 (as OpenAI answers an unknown model). Unknown style: 400.
    """
    if requested is not None:
        requested = aliases.get(requested.casefold(), requested)
    voice_name, slash, style_name = (requested or "").partition("/")
    named = registry.get(voice_name) if voice_name else None
    if named is not None:
        return _with_style(named, requested or "", style_name if slash else None)
    voice = _model_voice(registry, model)
    if not requested:
        return VoiceChoice(voice, None)
    if slash:
        raise _unknown_style(voice, requested, f"'{requested}' names no voice of this server")
    if requested.casefold() in OPENAI_VOICES:
        return VoiceChoice(voice, None)
    style = voice.style(requested)
    if style is None:
        reason = f"'{requested}' is neither a voice of this server, a style of '{voice.name}' nor an OpenAI voice name"
        raise _unknown_style(voice, requested, reason)
    return VoiceChoice(voice, style)


def _model_voice(registry: VoiceRegistry, model: str) -> Voice:
    """The voice `model` names; for an OpenAI model name, the only voice served; else 404."""
    voice = registry.get(model)
    if voice is None and is_openai_model(model):
        voice = registry.only()
    if voice is None:
        available = ", ".join(registry.names) or "none"
        hint = " (with an OpenAI model name, name the voice in 'voice')" if is_openai_model(model) else ""
        raise ApiError(
            404,
            f"model '{model}' is not a voice of this server{hint}; available voices: {available}",
            code="model_not_found",
            param="model",
        )
    return voice


def _with_style(voice: Voice, requested: str, style_name: str | None) -> VoiceChoice:
    """`voice` itself (no style named), or its style `style_name`; 400 when it has no such style."""
    if style_name is None:
        return VoiceChoice(voice, None)
    style = voice.style(style_name)
    if style is None:
        raise _unknown_style(voice, requested, f"voice '{voice.name}' has no style '{style_name}'")
    return VoiceChoice(voice, style)


def _unknown_style(voice: Voice, requested: str, reason: str) -> ApiError:
    styles = ", ".join(voice_id(voice.name, style) for style in [None, *voice.styles])
    return bad_request(f"{reason}; voices of this model: {styles} (see GET /v1/audio/voices)", "voice", "voice_not_found")


class ServedVoices:
    """The registry once loaded, the loading state /health reports, and the aliases of VOICE_ALIASES."""

    def __init__(self, aliases: Mapping[str, str]) -> None:
        self.aliases = aliases
        self.registry = VoiceRegistry()
        self.state = "loading"  # then "ready", "no_voices" (until a restart), or "failed" (see `failure`)
        #: Why loading failed outside any one voice (GenieData unloadable, a bug): python server.py then exits 1.
        self.failure: str | None = None
        self.created = int(time.time())  # the `created` of every model object

    async def load(
        self,
        folders: FoundVoices,
        genie_data_dir: Path,
        threads: int,
        models_dir: Path,
        cache_dir: Path | None = None,
        t2s_precision: str = "fp32",
    ) -> None:
        """Load every voice in a worker thread while /health answers 'loading' (through the caches in `cache_dir`).

        A broken voice folder is skipped; anything else that fails (GenieData, a bug) makes the state "failed".
        """
        started = time.perf_counter()
        try:
            self.registry = await anyio.to_thread.run_sync(
                load_voices, folders, genie_data_dir, threads, cache_dir, t2s_precision, abandon_on_cancel=True
            )
        except Exception as error:  # a broken voice is skipped inside load_voices: this is every voice failing
            self.failure = f"{type(error).__name__}: {error}"
            self.state = "failed"
            logger.exception("start-up failed: the voices cannot be loaded: %s", self.failure)
            return
        if len(self.registry) == 0:
            self.state = "no_voices"
            logger.error(
                "no voice could be loaded from %s: add a voice folder (see models/README.md) or run with --demo", models_dir
            )
            return
        for alias, target in self.aliases.items():
            name, _, style = target.partition("/")
            voice = self.registry.get(name)
            if voice is None or (style and voice.style(style) is None):
                logger.warning(
                    "VOICE_ALIASES: %s=%s names no loaded voice or style; requests using it get an error", alias, target
                )
        self.state = "ready"
        logger.info("ready voices=%s load_s=%.1f", ",".join(self.registry.names), time.perf_counter() - started)

    def ready(self) -> VoiceRegistry:
        """The registry, or 503 while the voices are still loading (or when loading them failed)."""
        if self.state == "loading":
            raise ApiError(503, "voices are still loading; retry shortly", code="loading", headers=[(b"retry-after", b"10")])
        if self.state == "failed":
            raise ApiError(503, "the server failed to load its voices (see its log); it must be restarted", code="startup_failed")
        return self.registry

    def choose(self, model: str, requested: str | None) -> VoiceChoice:
        return choose_voice(self.ready(), model, requested, self.aliases)
