"""Genie's predefined voices (mika, feibi, thirtyseven), fetched from the hub as ordinary voice folders.

Why: a fresh Space with an empty `models/` should speak before its owner adds a voice. The hub
keeps each character as `CharacterModels/v2ProPlus/<name>/` with `tts_models/`, `prompt_wav/` and
`prompt_wav.json`; we turn that into our layout (`tts_models/`, `reference/audio.wav`,
`reference/config.json`) so the server needs no special case for them.

Run ``python -m engine.tools.predefined mika [--models models]``; the Dockerfile does so at build time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import soundfile as sf

from engine.models.hub import HF_REPO, HF_REVISION, fetch_folder
from engine.voices.voice_folder import VoiceError, inspect_voice

#: name -> language of its reference clip (Genie's CHARA_LANG)
CHARACTERS = {"mika": "Japanese", "feibi": "Chinese", "thirtyseven": "English"}
ALIASES = {"37": "thirtyseven"}


class PredefinedVoiceError(RuntimeError):
    """The character is unknown, or could not be fetched or converted; the message says what to do."""


def character_name(name: str) -> str:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in CHARACTERS:
        raise PredefinedVoiceError(f"unknown predefined voice {name!r}; choose one of {', '.join(CHARACTERS)}")
    return key


def _reference_entry(folder: Path) -> tuple[str, Path]:
    """(transcript, clip) of the character's 'Normal' prompt, or its first one."""
    prompts = json.loads((folder / "prompt_wav.json").read_text(encoding="utf-8"))
    entry = prompts.get("Normal") or next(iter(prompts.values()))
    return entry["text"], folder / "prompt_wav" / entry["wav"]


def _as_voice_folder(fetched: Path, name: str, models_dir: Path) -> Path:
    """Rearrange Genie's character layout into a validated voice folder in a scratch directory."""
    text, clip = _reference_entry(fetched)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=models_dir))
    scratch.chmod(0o755)  # mkdtemp makes it private; the voice folder it becomes is ordinary data
    shutil.move(str(fetched / "tts_models"), scratch / "tts_models")
    (scratch / "reference").mkdir()
    audio, rate = sf.read(clip, dtype="float32")
    sf.write(scratch / "reference" / "audio.wav", audio, rate, subtype="PCM_16")
    (scratch / "reference" / "config.json").write_text(
        json.dumps({"text": text, "language": CHARACTERS[name]}, ensure_ascii=False), encoding="utf-8"
    )
    inspect_voice(scratch)
    return scratch


def install(name: str, models_dir: Path) -> Path:
    """Fetch the character into `models_dir/<name>/` unless a valid copy is already there."""
    name = character_name(name)
    target = models_dir / name
    if target.exists():
        try:
            inspect_voice(target)
            return target
        except VoiceError:
            shutil.rmtree(target)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".{name}.download"
    folder = f"CharacterModels/v2ProPlus/{name}"
    try:
        fetched = fetch_folder(folder, staging)
    except Exception as error:  # huggingface_hub raises many types for network and hub errors
        raise PredefinedVoiceError(
            f"could not download predefined voice {name!r} from the Hugging Face repo {HF_REPO} "
            f"(folder {folder}/, revision {HF_REVISION}): {type(error).__name__}: {error}"
        ) from None
    try:
        scratch = _as_voice_folder(fetched, name, models_dir)
    except (OSError, KeyError, ValueError, StopIteration, VoiceError, sf.LibsndfileError) as error:
        raise PredefinedVoiceError(f"could not install predefined voice {name!r} from {folder}/: {error}") from None
    scratch.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install Genie's predefined voices as voice folders.")
    parser.add_argument("names", nargs="+", help=f"one or more of {', '.join(CHARACTERS)}")
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder (default: models)")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            print(f"installed {install(name, args.models)}")
    except PredefinedVoiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
