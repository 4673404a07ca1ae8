"""One command from a GPT-SoVITS checkpoint pair and a reference clip to a voice folder.

    python -m engine.tools.prepare --ckpt my.ckpt --pth my.pth --reference clip.wav \\
        --text "exact transcript of the clip" --language ja --name my-voice [--models models] [--force] [--int8]

It checks the inputs, converts the checkpoints with `genie_tts.convert_to_onnx`, writes the reference as
32 kHz mono 16-bit WAV plus `config.json`, runs the validation of `server.py --check` on the result and
prints its verdict. With `--int8` it also writes the int8 T2S decoders (engine/tools/quantize.py) that
T2S_PRECISION=int8 loads. The folder is built next to the target under a dot-name (which the server ignores)
and renamed into place only once it passes, so a failure never leaves a half-written voice.

Checkpoints are checked first (engine/tools/checkpoints.py) because genie-tts converts wrong files silently.

Needs `torch` (requirements-convert.txt, not in the server image) and GenieData: importing `genie_tts`
requires it, and `engine.genie.import_genie` is the only importer. GenieData is found, or downloaded,
exactly as the server does (GENIE_DATA_DIR, GENIE_DOWNLOAD).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engine import genie
from engine.envflags import parse_bool
from engine.models.genie_data import resolve_genie_data
from engine.models.rates import SAMPLE_RATE
from engine.text.g2p import text_to_phonemes
from engine.text.languages import NAMES, SPELLINGS
from engine.tools.checkpoints import CheckpointError, check_gpt_checkpoint, check_sovits_checkpoint, require_torch
from engine.tools.quantize import QuantizeError, quantize_voice
from engine.voices.voice_folder import (
    BASE_FILES,
    G2P_DATA,
    PROMPT_ENCODER_FILES,
    REFERENCE_SECONDS,
    VoiceError,
    VoiceFolder,
    inspect_voice,
    normalize_language,
    verdict,
)

REFERENCE_RATE = SAMPLE_RATE


class PrepareError(Exception):
    """The voice cannot be prepared; the message names the input at fault and the fix."""


@dataclass(frozen=True)
class VoiceSources:
    ckpt: Path  # GPT (text-to-semantic) weights
    pth: Path  # SoVITS (vocoder) weights
    reference: Path
    text: str
    language: str


@dataclass(frozen=True)
class PreparedClip:
    audio: np.ndarray  # float32 mono at REFERENCE_RATE, within [-1, 1]
    source_rate: int
    source_channels: int
    warnings: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return self.audio.size / REFERENCE_RATE


# ---- inputs -------------------------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not name or name != Path(name).name or name.startswith("."):
        raise PrepareError(f"--name {name!r} must be a plain folder name: no '/', not starting with '.'")


def language_of(language: str) -> str:
    """The code of `--language`, as `config.json` accepts it."""
    code = normalize_language(language)
    if code is None:
        raise PrepareError(f"--language {language!r} is not one of {', '.join(sorted(SPELLINGS))}")
    return code


def read_reference(path: Path) -> PreparedClip:
    """Any format soundfile reads, as 32 kHz mono; warns outside the 3-10 s GPT-SoVITS accepts."""
    if not path.is_file():
        raise PrepareError(f"--reference {path} does not exist")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise PrepareError(f"--reference {path} is not audio soundfile can read ({error}); convert it to WAV or FLAC") from None
    if audio.shape[0] == 0:
        raise PrepareError(f"--reference {path} holds no audio")
    mono = audio.mean(axis=1)
    if rate != REFERENCE_RATE:
        mono = soxr.resample(mono, rate, REFERENCE_RATE, quality="HQ")
    # Resampling can overshoot full scale, and 16-bit PCM would wrap around instead of clipping.
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32)
    if not np.any(mono):
        raise PrepareError(f"--reference {path} is silent")
    seconds = mono.size / REFERENCE_RATE
    low, high = REFERENCE_SECONDS
    warnings = ()
    if not low <= seconds <= high:
        warnings = (
            f"reference audio is {seconds:.1f} s; GPT-SoVITS works best with {low:.0f}-{high:.0f} s: "
            "cut the clip at a sentence boundary and make --text the transcript of what remains",
        )
    return PreparedClip(mono, rate, audio.shape[1], warnings)


def write_reference(folder: Path, clip: PreparedClip, text: str, language: str) -> None:
    reference = folder / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    sf.write(str(reference / "audio.wav"), clip.audio, REFERENCE_RATE, subtype="PCM_16")
    config = {"text": text, "language": language}
    (reference / "config.json").write_text(json.dumps(config, ensure_ascii=False) + "\n", encoding="utf-8")


# ---- conversion ---------------------------------------------------------------------------------------


def convert(sources: VoiceSources, models: Path, kind: str, scratch: Path) -> None:
    """Run `genie_tts.convert_to_onnx`; it logs and swallows its own errors, so check what it wrote."""
    genie.convert_to_onnx(sources.ckpt, sources.pth, models, scratch / "converter-cache")
    shutil.rmtree(scratch / "converter-cache", ignore_errors=True)
    wanted = BASE_FILES + (PROMPT_ENCODER_FILES if kind == "V2ProPlus" else ())
    missing = [name for name in wanted if not (models / name).is_file()]
    if missing:
        raise PrepareError(f"genie-tts's converter did not write {', '.join(missing)}; its log above says why")


def check_reference_text(text: str, language: str, genie_data_dir: Path) -> None:
    """G2P the transcript now, as loading the voice will, so an unusable one fails before converting."""
    if language in G2P_DATA and not (genie_data_dir / G2P_DATA[language]).is_dir():
        raise PrepareError(f"{NAMES[language]} needs {genie_data_dir / G2P_DATA[language]} (part of the full GenieData)")
    try:
        phonemes = text_to_phonemes(text, language, prefix="")
    except Exception as error:  # G2P libraries raise assorted errors on text they cannot handle
        raise PrepareError(f"--text cannot be turned into phonemes ({type(error).__name__}: {error})") from None
    if not phonemes.speakable:
        raise PrepareError(f"--text {text!r} has nothing pronounceable in {NAMES[language]}")


def _install(scratch: Path, target: Path) -> None:
    """Rename the finished folder into place; a folder it replaces (--force) is removed afterwards."""
    replaced = None
    if target.exists():
        replaced = scratch.with_suffix(".replaced")
        target.rename(replaced)
    try:
        scratch.rename(target)
    except OSError:
        if replaced is not None:
            replaced.rename(target)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def check_sources(sources: VoiceSources, target: Path, force: bool) -> tuple[PreparedClip, str]:
    """Everything that needs neither GenieData nor a conversion; returns the clip and the model kind."""
    check_name(target.name)
    language_of(sources.language)
    if not sources.text.strip():
        raise PrepareError("--text must be the transcript of the reference clip")
    if target.exists() and not force:
        raise PrepareError(f"{target} already exists; pass --force to replace it")
    clip = read_reference(sources.reference)
    channels = f"{clip.source_channels} channel(s) at {clip.source_rate} Hz"
    print(f"reference: {clip.seconds:.1f} s, {channels} -> mono {REFERENCE_RATE} Hz")
    for warning in clip.warnings:
        print(f"WARN {warning}")
    require_torch()
    check_gpt_checkpoint(sources.ckpt)
    kind = check_sovits_checkpoint(sources.pth)
    print(f"checkpoints: GPT-SoVITS {kind}")
    return clip, kind


def build_voice(
    sources: VoiceSources, clip: PreparedClip, kind: str, target: Path, genie_data_dir: Path, int8: bool = False
) -> None:
    """Convert and write the reference in a scratch folder beside `target`; rename it there once it passes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp makes it private; the voice folder it becomes is ordinary data
    try:
        write_reference(scratch, clip, sources.text.strip(), sources.language.strip())
        print("converting with genie-tts (a minute or two for a real voice)")
        convert(sources, scratch / "tts_models", kind, scratch)
        try:
            converted = inspect_voice(scratch, genie_data_dir)
        except VoiceError as error:
            raise PrepareError(f"the converted voice fails the check: {error}") from None
        if converted.kind != kind:
            raise PrepareError(f"the converter wrote a {converted.kind} voice from {kind} weights")
        if int8:
            print("writing int8 T2S decoders (T2S_PRECISION=int8)")
            try:
                for report in quantize_voice(scratch / "tts_models"):
                    print(report.line())
            except QuantizeError as error:
                raise PrepareError(f"int8 decoders: {error}") from None
        _install(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare_voice(
    sources: VoiceSources, target: Path, genie_data_dir: Path, *, allow_download: bool, force: bool, int8: bool = False
) -> VoiceFolder:
    """Write the voice folder `target`, checking everything cheap before GenieData and the conversion."""
    clip, kind = check_sources(sources, target, force)
    genie_data_dir = resolve_genie_data(genie_data_dir, allow_download)
    genie.import_genie(genie_data_dir)
    check_reference_text(sources.text.strip(), language_of(sources.language), genie_data_dir)
    build_voice(sources, clip, kind, target, genie_data_dir, int8)
    return inspect_voice(target, genie_data_dir)


# ---- command line -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m engine.tools.prepare",
        description="Turn a GPT-SoVITS V2 or V2ProPlus checkpoint pair and a reference clip into a voice folder "
        "(models/<name>/). Needs torch (pip install -r requirements-convert.txt) and GenieData (GENIE_DATA_DIR).",
    )
    parser.add_argument("--ckpt", type=Path, required=True, help="GPT weights (.ckpt, from GPT_weights*/)")
    parser.add_argument("--pth", type=Path, required=True, help="SoVITS weights (.pth, from SoVITS_weights*/)")
    parser.add_argument("--reference", type=Path, required=True, help="3-10 s of the voice, any format soundfile reads")
    parser.add_argument("--text", required=True, help="exact transcript of the reference clip")
    parser.add_argument("--language", required=True, help="language of the transcript: ja, en, zh or ko")
    parser.add_argument("--name", required=True, help="voice name: the folder, and the `model` clients ask for")
    parser.add_argument("--models", type=Path, help="voice folders (MODELS_DIR, default ./models)")
    parser.add_argument("--force", action="store_true", help="replace an existing voice of that name")
    parser.add_argument("--int8", action="store_true", help="also write int8 T2S decoders (for T2S_PRECISION=int8)")
    return parser.parse_args(argv)


def genie_download_allowed(environ: Mapping[str, str]) -> bool:
    """GENIE_DOWNLOAD as the server reads it (.env.example): on unless 0, false, no or off."""
    try:
        return parse_bool(environ.get("GENIE_DOWNLOAD", "1").strip())  # stripped, as settings.py reads every value
    except ValueError as error:
        raise ValueError(f"environment variable GENIE_DOWNLOAD: {error}") from None  # settings.py's wording


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The same variables as the server's (MODELS_DIR, GENIE_DATA_DIR, GENIE_DOWNLOAD), with the same defaults.
    models_dir = args.models or Path(os.environ.get("MODELS_DIR") or "models").expanduser()
    genie_data_dir = Path(os.environ.get("GENIE_DATA_DIR") or "GenieData").expanduser()
    try:
        allow_download = genie_download_allowed(os.environ)
    except ValueError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    sources = VoiceSources(args.ckpt, args.pth, args.reference, args.text, args.language)
    try:
        check_name(args.name)  # before it is joined to a path: "../x" must not become "x"
        target = models_dir / args.name
        folder = prepare_voice(sources, target, genie_data_dir, allow_download=allow_download, force=args.force, int8=args.int8)
    except (PrepareError, CheckpointError, genie.GenieDataMissing) as error:
        print(f"ERROR {args.name}: {error}", file=sys.stderr)
        return 1
    print(verdict(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
