"""One command from a GPT-SoVITS checkpoint pair and a reference clip to a voice folder.

    python -m engine.prepare --ckpt my.ckpt --pth my.pth --reference clip.wav \\
        --text "exact transcript of the clip" --language ja --name my-voice [--models models] [--force]

It checks the inputs, converts the checkpoints with `genie_tts.convert_to_onnx`, writes the reference as
32 kHz mono 16-bit WAV plus `config.json`, runs the validation of `server.py --check` on the result and
prints its verdict. The folder is built next to the target under a dot-name (which the server ignores)
and renamed into place only once it passes, so a failure never leaves a half-written voice.

Why the checkpoints are checked before the converter sees them: genie-tts 2.0.2 picks V2 or V2ProPlus
by the size of the .pth alone (over 150 MB means V2ProPlus), looks weights up without checking their
shapes, and logs and swallows its own exceptions; a wrong file either vanishes with a traceback in the
log or converts into a voice that only fails when the server loads it. So every tensor the converter
will read is compared with the shape its ONNX template holds, and the size rule with what the weights are.

Checkpoints are read with `weights_only=True`: GPT-SoVITS .pth files hold tensors, plain containers and
(in older versions) its `utils.HParams` config class, which is read as a plain attribute holder. genie-tts
then unpickles the .pth with `weights_only=False`, so refusing anything else first keeps a file that carries
code from ever running.

Needs `torch` (requirements-convert.txt, not in the server image) and GenieData: importing `genie_tts`
requires it, and `engine.genie.import_genie` is the only importer. GenieData is found, or downloaded,
exactly as the server does (GENIE_DATA_DIR, GENIE_DOWNLOAD).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import soundfile as sf
import soxr

from engine.voice_folder import (
    BASE_FILES,
    LANGUAGES,
    PROMPT_ENCODER_FILES,
    REFERENCE_SECONDS,
    VoiceError,
    VoiceFolder,
    inspect_voice,
    normalize_language,
)

KINDS = ("V2", "V2ProPlus")
#: genie_tts/Converter/Converter.py: a .pth larger than this is converted as V2ProPlus, any other as V2.
GENIE_V2PROPLUS_BYTES = 150 * 1024 * 1024
#: GPT-SoVITS writes these two bytes over the zip magic "PK" of newer SoVITS .pth files to mark the version.
SOVITS_HEADERS = {
    b"00": "v1",
    b"01": "v2",
    b"02": "v3",
    b"03": "v3 LoRA",
    b"04": "v4 LoRA",
    b"05": "v2Pro",
    b"06": "v2ProPlus",
}
REFERENCE_RATE = 32000
TORCH_INSTALL = (
    "pip install -r requirements-convert.txt (from the repository root; or just the CPU build of torch: "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)"
)


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
class ReferenceClip:
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


def check_language(language: str) -> None:
    if normalize_language(language) is None:
        raise PrepareError(f"--language {language!r} is not one of {', '.join(sorted(LANGUAGES))}")


def read_reference(path: Path) -> ReferenceClip:
    """Any format soundfile reads, as 32 kHz mono; warns outside the 3-10 s GPT-SoVITS was trained on."""
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
    clip = ReferenceClip(mono, rate, audio.shape[1], ())
    low, high = REFERENCE_SECONDS
    if not low <= clip.seconds <= high:
        warning = (
            f"reference audio is {clip.seconds:.1f} s; GPT-SoVITS works best with {low:.0f}-{high:.0f} s: "
            "cut the clip at a sentence boundary and make --text the transcript of what remains"
        )
        clip = ReferenceClip(mono, rate, audio.shape[1], (warning,))
    return clip


def write_reference(folder: Path, clip: ReferenceClip, text: str, language: str) -> None:
    reference = folder / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    sf.write(str(reference / "audio.wav"), clip.audio, REFERENCE_RATE, subtype="PCM_16")
    config = {"text": text, "language": language}
    (reference / "config.json").write_text(json.dumps(config, ensure_ascii=False) + "\n", encoding="utf-8")


def require_torch() -> None:
    try:
        import torch  # noqa: F401, PLC0415  (optional extra: only this command needs it)
    except ImportError:
        raise PrepareError(f"reading GPT-SoVITS checkpoints needs torch, which is not installed. Run: {TORCH_INSTALL}") from None


# ---- what the converter reads -------------------------------------------------------------------------


def _package_data() -> Path:
    """genie_tts/Data, found without importing genie_tts (its import needs GenieData)."""
    spec = find_spec("genie_tts")
    if spec is None or spec.origin is None:
        raise PrepareError("genie-tts is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "Data"


def _initializer_shapes(model: Path) -> dict[str, tuple[int, ...]]:
    graph = onnx.load(str(model), load_external_data=False).graph
    return {tensor.name: tuple(tensor.dims) for tensor in graph.initializer}


def _key_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@functools.cache
def expected_weights(kind: str) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(.ckpt, .pth) `weight` name -> shape for every tensor genie-tts's converter reads for `kind`.

    The names follow the converter's mapping from its key lists; the shapes are the ONNX templates'
    initializer shapes, which the converted weights must fill byte for byte. Read-only (cached).
    """
    data = _package_data()
    decoder = _initializer_shapes(data / "v2/Models/t2s_first_stage_decoder_fp32.onnx")
    gpt = {"model." + key.replace("transformer_encoder", "h"): decoder[key] for key in _key_list(data / "v2/Keys/t2s_onnx_keys.txt")}
    sovits: dict[str, tuple[int, ...]] = {}
    for name, shape in _initializer_shapes(data / "v2/Models/t2s_encoder_fp32.onnx").items():
        if name.startswith("encoder."):
            gpt["model." + name.removeprefix("encoder.")] = shape
        elif name.startswith("vits."):
            sovits[name.removeprefix("vits.")] = shape
    if kind == "V2":
        parts = [("v2/Models/vits_fp32.onnx", "v2/Keys/vits_onnx_keys.txt")]
    else:
        parts = [
            ("v2ProPlus/Models/vits_fp32.onnx", "v2ProPlus/Keys/vits_weights.txt"),
            ("v2ProPlus/Models/prompt_encoder_fp32.onnx", "v2ProPlus/Keys/prompt_encoder_weights.txt"),
        ]
    for model, keys in parts:
        shapes = _initializer_shapes(data / model)
        sovits.update({key.removeprefix("vq_model."): shapes[key] for key in _key_list(data / keys)})
    return gpt, sovits


def shape_problems(weights: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    import torch  # noqa: PLC0415

    problems = []
    for name, shape in expected.items():
        tensor = weights.get(name)
        if not isinstance(tensor, torch.Tensor):
            problems.append(f"{name} is missing")
        elif tuple(tensor.shape) != shape:
            problems.append(f"{name} is {list(tensor.shape)}, expected {list(shape)}")
        elif not tensor.is_floating_point():
            problems.append(f"{name} is {tensor.dtype}, expected floating point")
    return problems


def _summary(problems: list[str], total: int) -> str:
    return f"{len(problems)} of the {total} weights it needs differ, e.g. " + "; ".join(problems[:3])


# ---- reading checkpoints ------------------------------------------------------------------------------


class _HParams:
    """Stands in for GPT-SoVITS's `utils.HParams`, the class older versions pickle a .pth's config as."""


def _file_head(path: Path, flag: str) -> bytes:
    if not path.is_file():
        raise PrepareError(f"{flag} {path} does not exist")
    with path.open("rb") as file:
        return file.read(2)


def load_checkpoint(path: Path, flag: str) -> Any:
    """Load as genie-tts will (a .pth may carry a version marker instead of "PK"), but weights-only."""
    import torch  # noqa: PLC0415

    head = _file_head(path, flag)
    if head == b"PK":
        source: Path | BytesIO = path
    elif head in SOVITS_HEADERS and flag == "--pth":
        source = BytesIO(b"PK" + path.read_bytes()[2:])
    elif head in SOVITS_HEADERS:
        raise PrepareError(f"{flag} {path} is a GPT-SoVITS {SOVITS_HEADERS[head]} SoVITS model (a .pth); are --ckpt and --pth swapped?")
    else:
        raise PrepareError(f"{flag} {path} is not a PyTorch checkpoint (torch.save files start with 'PK')")
    try:
        with torch.serialization.safe_globals([(_HParams, "utils.HParams")]):
            return torch.load(source, map_location="cpu", weights_only=True, mmap=isinstance(source, Path))
    except pickle.UnpicklingError as error:
        unsupported = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), str(error))
        raise PrepareError(
            f"{flag} {path} holds Python objects besides tensors and GPT-SoVITS's config ({unsupported}); "
            "refusing to unpickle it, since that can run any code"
        ) from None
    except Exception as error:  # torch reports a damaged or foreign archive with many exception types
        raise PrepareError(f"{flag} {path} is not a readable PyTorch checkpoint: {type(error).__name__}: {error}") from None


def _weights(checkpoint: Any, path: Path, flag: str) -> dict[str, Any]:
    weights = checkpoint.get("weight") if isinstance(checkpoint, dict) else None
    if isinstance(weights, dict):
        return weights
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        raise PrepareError(
            f"{flag} {path} is a training checkpoint (it has 'state_dict', not 'weight'); "
            "use the exported weights from GPT-SoVITS's GPT_weights*/ and SoVITS_weights*/ folders"
        )
    found = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise PrepareError(f"{flag} {path} is a PyTorch file but not a GPT-SoVITS model: it has no 'weight' dict (found {found})")


def _model_family(weights: Mapping[str, Any]) -> str | None:
    if any(name.startswith("model.") for name in weights):
        return "GPT"
    if any(name.startswith(("enc_p.", "dec.")) for name in weights):
        return "SoVITS"
    return None


def check_gpt_checkpoint(path: Path) -> None:
    weights = _weights(load_checkpoint(path, "--ckpt"), path, "--ckpt")
    if _model_family(weights) == "SoVITS":
        raise PrepareError(f"--ckpt {path} holds SoVITS weights (those belong in --pth); are --ckpt and --pth swapped?")
    expected, _ = expected_weights("V2")
    problems = shape_problems(weights, expected)
    if problems:
        raise PrepareError(f"--ckpt {path} is not a GPT-SoVITS v2 GPT model genie-tts can convert: {_summary(problems, len(expected))}")


def check_sovits_checkpoint(path: Path) -> str:
    """The kind ("V2" or "V2ProPlus") the weights are, provided genie-tts's size rule agrees."""
    head = _file_head(path, "--pth")
    weights = _weights(load_checkpoint(path, "--pth"), path, "--pth")
    if _model_family(weights) == "GPT":
        raise PrepareError(f"--pth {path} holds GPT weights (those belong in --ckpt); are --ckpt and --pth swapped?")
    problems = {kind: shape_problems(weights, expected_weights(kind)[1]) for kind in KINDS}
    matching = [kind for kind in KINDS if not problems[kind]]
    if not matching:
        closest = min(KINDS, key=lambda kind: len(problems[kind]))
        marker = f" Its header marks it as GPT-SoVITS {SOVITS_HEADERS[head]}." if head in SOVITS_HEADERS else ""
        raise PrepareError(
            f"--pth {path} is neither a V2 nor a V2ProPlus SoVITS model, the two kinds genie-tts 2.0.2 converts.{marker} "
            f"Closest is {closest}: {_summary(problems[closest], len(expected_weights(closest)[1]))}"
        )
    kind = matching[0]
    size = path.stat().st_size
    by_size = "V2ProPlus" if size > GENIE_V2PROPLUS_BYTES else "V2"
    if by_size != kind:
        advice = (
            "V2 weights saved in half precision, as GPT-SoVITS exports them, take about 85 MB: re-save the tensors "
            "of 'weight' with .half()"
            if kind == "V2"
            else "GPT-SoVITS exports V2ProPlus weights as about 170 MB: re-export it, each tensor in its own storage"
        )
        raise PrepareError(
            f"--pth {path} holds {kind} weights but is {size / 2**20:.0f} MB, and genie-tts 2.0.2 decides by size "
            f"(over 150 MB means V2ProPlus), so it would convert it as {by_size} and fail. {advice}"
        )
    return kind


# ---- conversion ---------------------------------------------------------------------------------------


@contextmanager
def _converter_cache(cache: Path) -> Iterator[None]:
    """Point genie-tts's converter scratch folder at `cache`.

    It is fixed at import as ./Cache in the working directory and deleted after every conversion,
    which would take a user's own ./Cache folder with it.
    """
    modules = [importlib.import_module(f"genie_tts.Converter.{kind}.Converter") for kind in ("v2", "v2ProPlus")]
    saved = [module.CACHE_DIR for module in modules]
    for module in modules:
        module.CACHE_DIR = str(cache)
    try:
        yield
    finally:
        for module, value in zip(modules, saved):
            module.CACHE_DIR = value


def convert(sources: VoiceSources, models: Path, kind: str, scratch: Path) -> None:
    """Run `genie_tts.convert_to_onnx`; it logs and swallows its own errors, so check what it wrote."""
    genie = sys.modules["genie_tts"]
    with _converter_cache(scratch / "converter-cache"):
        genie.convert_to_onnx(torch_ckpt_path=sources.ckpt, torch_pth_path=sources.pth, output_dir=models)
    shutil.rmtree(scratch / "converter-cache", ignore_errors=True)
    wanted = BASE_FILES + (PROMPT_ENCODER_FILES if kind == "V2ProPlus" else ())
    missing = [name for name in wanted if not (models / name).is_file()]
    if missing:
        raise PrepareError(f"genie-tts's converter did not write {', '.join(missing)}; its log above says why")


def check_reference_text(text: str, language: str) -> None:
    """G2P the transcript now, as loading the voice will, so an unusable one fails here."""
    from engine.synthesis import text_to_phonemes  # noqa: PLC0415  (imports genie_tts)

    try:
        phonemes = text_to_phonemes(text, normalize_language(language) or language, prefix="")
    except Exception as error:  # G2P libraries raise assorted errors on text they cannot handle
        raise PrepareError(f"--text cannot be turned into phonemes ({type(error).__name__}: {error})") from None
    if not phonemes.speakable:
        raise PrepareError(f"--text {text!r} has nothing pronounceable in {normalize_language(language)}")


def _install(scratch: Path, target: Path) -> None:
    """Rename the finished folder into place; a folder it replaces (--force) is removed afterwards."""
    replaced = None
    if target.exists():
        replaced = target.with_name(f".{target.name}.replaced-{scratch.name}")
        target.rename(replaced)
    try:
        scratch.rename(target)
    except OSError:
        if replaced is not None:
            replaced.rename(target)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def prepare_voice(
    sources: VoiceSources, name: str, models_dir: Path, genie_data_dir: Path, *, allow_download: bool, force: bool
) -> VoiceFolder:
    """Write `models_dir/name`: everything cheap is checked first, the conversion runs in a scratch folder."""
    from engine.genie import import_genie  # noqa: PLC0415
    from engine.genie_data import resolve_genie_data  # noqa: PLC0415

    check_name(name)
    target = models_dir / name
    check_language(sources.language)
    if not sources.text.strip():
        raise PrepareError("--text must be the transcript of the reference clip")
    if target.exists() and not force:
        raise PrepareError(f"{target} already exists; pass --force to replace it")
    clip = read_reference(sources.reference)
    print(f"reference: {clip.seconds:.1f} s, {clip.source_channels} channel(s) at {clip.source_rate} Hz -> mono {REFERENCE_RATE} Hz")
    for warning in clip.warnings:
        print(f"WARN {warning}")
    require_torch()
    check_gpt_checkpoint(sources.ckpt)
    kind = check_sovits_checkpoint(sources.pth)
    print(f"checkpoints: GPT-SoVITS {kind}")

    genie_data_dir = resolve_genie_data(genie_data_dir, allow_download)
    import_genie(genie_data_dir)
    check_reference_text(sources.text.strip(), sources.language)

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
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
        _install(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return inspect_voice(target, genie_data_dir)


# ---- command line -------------------------------------------------------------------------------------


def verdict(folder: VoiceFolder) -> str:
    """The line `server.py --check` prints for a voice that can be served."""
    status = "WARN " if folder.warnings else "OK   "
    detail = "".join(f"; {warning}" for warning in folder.warnings)
    return f"{status}{folder.name}: {folder.kind}, {folder.language}, reference {folder.reference_seconds:.1f} s{detail}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m engine.prepare",
        description="Turn a GPT-SoVITS V2 or V2ProPlus checkpoint pair and a reference clip into a voice folder "
        "(models/<name>/). Needs torch (pip install -r requirements-convert.txt) and GenieData (GENIE_DATA_DIR).",
    )
    parser.add_argument("--ckpt", type=Path, required=True, help="GPT weights (.ckpt, from GPT_weights*/)")
    parser.add_argument("--pth", type=Path, required=True, help="SoVITS weights (.pth, from SoVITS_weights*/)")
    parser.add_argument("--reference", type=Path, required=True, help="3-10 s of the voice, any format soundfile reads")
    parser.add_argument("--text", required=True, help="exact transcript of the reference clip")
    parser.add_argument("--language", required=True, help="language of the transcript: ja, en or zh")
    parser.add_argument("--name", required=True, help="voice name: the folder, and the `model` clients ask for")
    parser.add_argument("--models", type=Path, help="voice folders (MODELS_DIR, default ./models)")
    parser.add_argument("--force", action="store_true", help="replace an existing voice of that name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from engine.genie import GenieDataMissing  # noqa: PLC0415
    from engine.settings import Settings  # noqa: PLC0415

    args = parse_args(argv)
    try:
        settings = Settings.from_env().with_overrides(models_dir=args.models)
    except ValueError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    sources = VoiceSources(args.ckpt, args.pth, args.reference, args.text, args.language)
    try:
        folder = prepare_voice(
            sources,
            args.name,
            settings.models_dir,
            settings.genie_data_dir,
            allow_download=settings.genie_download,
            force=args.force,
        )
    except (PrepareError, GenieDataMissing) as error:
        print(f"ERROR {args.name}: {error}", file=sys.stderr)
        return 1
    print(verdict(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
