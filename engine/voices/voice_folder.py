"""Validation of a voice folder on disk, without loading any model.

Shared by start-up (broken voices are skipped with this message) and `server.py --check`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from engine.models.model_files import BASE_FILES, PROMPT_ENCODER_FILES
from engine.models.weight_files import is_lfs_pointer, lfs_pointer_message, weight_problem
from engine.text.languages import NAMES, SPELLINGS, language_code

#: GenieData folders each language's G2P needs (Japanese G2P ships its dictionary; Korean's is ours, on PyPI packages).
G2P_DATA = {"zh": "G2P/ChineseG2P", "en": "G2P/EnglishG2P"}

REFERENCE_SECONDS = (3.0, 10.0)


#: Style folder names become part of voice ids ("<voice>/<style>"): keep them plain.
STYLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VoiceError(Exception):
    """A voice folder that cannot be served; the message names the file and the fix."""


@dataclass(frozen=True)
class ReferenceClip:
    """A reference clip and its transcript: the default in reference/, or a style in reference/<style>/
    (the same voice in another manner of speaking)."""

    audio: Path
    text: str
    language: str  # a code (engine/text/languages.py)
    seconds: float


@dataclass(frozen=True)
class VoiceFolder:
    name: str
    path: Path
    kind: str  # "V2ProPlus" or "V2"
    reference: ReferenceClip  # the default clip, in reference/
    warnings: list[str] = field(default_factory=list)
    styles: dict[str, ReferenceClip] = field(default_factory=dict)

    @property
    def models(self) -> Path:
        return self.path / "tts_models"

    @property
    def language(self) -> str:
        """The code of the voice's language: its default clip's."""
        return self.reference.language


def normalize_language(value: object) -> str | None:
    """The code of a `config.json` language (surrounding spaces allowed); None when it is not one."""
    return language_code(value.strip()) if isinstance(value, str) else None


def inspect_voice(path: Path, genie_data_dir: Path | None = None) -> VoiceFolder:
    """Check every file a voice needs; raise VoiceError naming the first problem."""
    models = path / "tts_models"
    if not models.is_dir():
        raise VoiceError(f"missing folder {models}")
    missing = [name for name in BASE_FILES if not (models / name).is_file()]
    if missing:
        raise VoiceError(f"{models} lacks {', '.join(missing)}")
    prompt_files = [(models / name).is_file() for name in PROMPT_ENCODER_FILES]
    if any(prompt_files) and not all(prompt_files):
        present, absent = PROMPT_ENCODER_FILES if prompt_files[0] else PROMPT_ENCODER_FILES[::-1]
        raise VoiceError(f"{models} has {present} but not {absent} (V2ProPlus needs both, V2 neither)")
    kind = "V2ProPlus" if all(prompt_files) else "V2"
    problem = weight_problem(models, BASE_FILES + (PROMPT_ENCODER_FILES if kind == "V2ProPlus" else ()))
    if problem:
        raise VoiceError(problem)

    default, warnings = inspect_reference(path / "reference", None, genie_data_dir)
    styles: dict[str, ReferenceClip] = {}
    for style_dir in sorted(p for p in (path / "reference").iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not STYLE_NAME.match(style_dir.name) or style_dir.name.casefold() == "default":
            warnings.append(f"style folder {style_dir.name!r} skipped: use letters, digits, '-', '_' or '.' (and not 'default')")
            continue
        try:
            clip, clip_warnings = inspect_reference(style_dir, default.language, genie_data_dir)
        except VoiceError as error:
            warnings.append(f"style {style_dir.name!r} skipped: {error}")
            continue
        styles[style_dir.name] = clip
        warnings.extend(f"style {style_dir.name!r}: {warning}" for warning in clip_warnings)
    return VoiceFolder(path.name, path, kind, default, warnings, styles)


def inspect_reference(folder: Path, default_language: str | None, genie_data_dir: Path | None) -> tuple[ReferenceClip, list[str]]:
    """Check one reference clip (audio.wav plus config.json); a style may leave out its language."""
    config_path = folder / "config.json"
    audio_path = folder / "audio.wav"
    if not config_path.is_file():
        raise VoiceError(f'missing {config_path} (expected {{"text": ..., "language": ...}})')
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VoiceError(f"{config_path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise VoiceError(f'{config_path} must be an object {{"text": ..., "language": ...}}')
    text = config.get("text")
    if not isinstance(text, str) or not text.strip():
        raise VoiceError(f'{config_path}: "text" must be the non-empty transcript of the reference audio')
    given = config.get("language")
    language = default_language if given is None and default_language else normalize_language(given)
    if language is None:
        raise VoiceError(f'{config_path}: unknown "language" {given!r}; use one of {", ".join(sorted(SPELLINGS))}')
    if genie_data_dir is not None and language in G2P_DATA and not (genie_data_dir / G2P_DATA[language]).is_dir():
        raise VoiceError(f"{NAMES[language]} needs {genie_data_dir / G2P_DATA[language]} (part of the full GenieData)")

    if not audio_path.is_file():
        raise VoiceError(f"missing {audio_path}")
    if is_lfs_pointer(audio_path):
        raise VoiceError(lfs_pointer_message(audio_path))
    try:
        info = sf.info(str(audio_path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise VoiceError(f"{audio_path} is not readable audio: {error}") from None
    if info.frames == 0 or info.samplerate <= 0:
        raise VoiceError(f"{audio_path} holds no audio")
    seconds = info.frames / info.samplerate
    warnings = []
    low, high = REFERENCE_SECONDS
    if not low <= seconds <= high:
        warnings.append(f"reference audio is {seconds:.1f} s; GPT-SoVITS works best with {low:.0f}-{high:.0f} s")
    return ReferenceClip(audio_path, text.strip(), language, seconds), warnings


def verdict(folder: VoiceFolder) -> str:
    """The one-line status `server.py --check` and `python -m engine.tools.prepare` print for a servable voice."""
    status = "WARN " if folder.warnings else "OK   "
    detail = "".join(f"; {warning}" for warning in folder.warnings)
    styles = f", styles {', '.join(folder.styles)}" if folder.styles else ""
    language = NAMES[folder.language]
    return f"{status}{folder.name}: {folder.kind}, {language}, reference {folder.reference.seconds:.1f} s{styles}{detail}"


def scan(models_dir: Path, genie_data_dir: Path | None = None) -> list[tuple[str, VoiceFolder | VoiceError]]:
    """(name, folder or the reason it cannot be served) per subfolder of `models_dir`, sorted by name."""
    if not models_dir.is_dir():
        return []
    results: list[tuple[str, VoiceFolder | VoiceError]] = []
    for path in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            results.append((path.name, inspect_voice(path, genie_data_dir)))
        except VoiceError as error:
            results.append((path.name, error))
    return results
