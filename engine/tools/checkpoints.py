"""Reading GPT-SoVITS checkpoints safely and checking them against what genie-tts's converter will read.

genie-tts 2.0.2 picks V2 or V2ProPlus by the size of the .pth alone (over 150 MB means V2ProPlus), looks
weights up without checking their shapes, and logs and swallows its own exceptions; a wrong file either
vanishes with a traceback in the log or converts into a voice that only fails when the server loads it.
So every tensor the converter will read is compared with the shape its ONNX template holds, and the
size rule with what the weights are.

Checkpoints are read with `weights_only=True`: GPT-SoVITS .pth files hold tensors, plain containers and
(in older versions) its `utils.HParams` config class, which is read as a plain attribute holder. genie-tts
then unpickles the .pth with `weights_only=False`, so refusing anything else first keeps a file that carries
code from ever running.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import onnx

from engine.genie import package_data_dir

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
TORCH_INSTALL = (
    "pip install -r requirements-convert.txt (from the repository root; or just the CPU build of torch: "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)"
)


class CheckpointError(ValueError):
    """A checkpoint genie-tts cannot convert; the message names the file and the fix."""


def require_torch() -> None:
    try:
        import torch  # noqa: F401, PLC0415  (optional extra: only this command needs it)
    except ImportError:
        raise CheckpointError(
            f"reading GPT-SoVITS checkpoints needs torch, which is not installed. Run: {TORCH_INSTALL}"
        ) from None


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
    data = package_data_dir()
    decoder = _initializer_shapes(data / "v2/Models/t2s_first_stage_decoder_fp32.onnx")
    gpt = {
        "model." + key.replace("transformer_encoder", "h"): decoder[key] for key in _key_list(data / "v2/Keys/t2s_onnx_keys.txt")
    }
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
        raise CheckpointError(f"{flag} {path} does not exist")
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
        raise CheckpointError(
            f"{flag} {path} is a GPT-SoVITS {SOVITS_HEADERS[head]} SoVITS model (a .pth); are --ckpt and --pth swapped?"
        )
    else:
        raise CheckpointError(f"{flag} {path} is not a PyTorch checkpoint (torch.save files start with 'PK')")
    try:
        with torch.serialization.safe_globals([(_HParams, "utils.HParams")]):
            return torch.load(source, map_location="cpu", weights_only=True, mmap=isinstance(source, Path))
    except pickle.UnpicklingError as error:
        unsupported = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), str(error))
        raise CheckpointError(
            f"{flag} {path} holds Python objects besides tensors and GPT-SoVITS's config ({unsupported}); "
            "refusing to unpickle it, since that can run any code"
        ) from None
    except Exception as error:  # torch reports a damaged or foreign archive with many exception types
        raise CheckpointError(f"{flag} {path} is not a readable PyTorch checkpoint: {type(error).__name__}: {error}") from None


def _weights(checkpoint: Any, path: Path, flag: str) -> dict[str, Any]:
    weights = checkpoint.get("weight") if isinstance(checkpoint, dict) else None
    if isinstance(weights, dict):
        return weights
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        raise CheckpointError(
            f"{flag} {path} is a training checkpoint (it has 'state_dict', not 'weight'); "
            "use the exported weights from GPT-SoVITS's GPT_weights*/ and SoVITS_weights*/ folders"
        )
    found = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise CheckpointError(f"{flag} {path} is a PyTorch file but not a GPT-SoVITS model: it has no 'weight' dict (found {found})")


def _model_family(weights: Mapping[str, Any]) -> str | None:
    if any(name.startswith("model.") for name in weights):
        return "GPT"
    if any(name.startswith(("enc_p.", "dec.")) for name in weights):
        return "SoVITS"
    return None


def check_gpt_checkpoint(path: Path) -> None:
    weights = _weights(load_checkpoint(path, "--ckpt"), path, "--ckpt")
    if _model_family(weights) == "SoVITS":
        raise CheckpointError(f"--ckpt {path} holds SoVITS weights (those belong in --pth); are --ckpt and --pth swapped?")
    expected, _ = expected_weights("V2")
    problems = shape_problems(weights, expected)
    if problems:
        raise CheckpointError(
            f"--ckpt {path} is not a GPT-SoVITS v2 GPT model genie-tts can convert: {_summary(problems, len(expected))}"
        )


def check_sovits_checkpoint(path: Path) -> str:
    """The kind ("V2" or "V2ProPlus") the weights are, provided genie-tts's size rule agrees."""
    head = _file_head(path, "--pth")
    weights = _weights(load_checkpoint(path, "--pth"), path, "--pth")
    if _model_family(weights) == "GPT":
        raise CheckpointError(f"--pth {path} holds GPT weights (those belong in --ckpt); are --ckpt and --pth swapped?")
    problems = {kind: shape_problems(weights, expected_weights(kind)[1]) for kind in KINDS}
    matching = [kind for kind in KINDS if not problems[kind]]
    if not matching:
        closest = min(KINDS, key=lambda kind: len(problems[kind]))
        marker = f" Its header marks it as GPT-SoVITS {SOVITS_HEADERS[head]}." if head in SOVITS_HEADERS else ""
        raise CheckpointError(
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
        raise CheckpointError(
            f"--pth {path} holds {kind} weights but is {size / 2**20:.0f} MB, and genie-tts 2.0.2 decides by size "
            f"(over 150 MB means V2ProPlus), so it would convert it as {by_size} and fail. {advice}"
        )
    return kind
