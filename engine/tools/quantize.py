"""int8 T2S decoders for a voice folder, written next to its fp32 ones (opt-in: T2S_PRECISION=int8).

    python -m engine.tools.quantize models/my-voice

Why offline and in three steps: the decoders are Genie templates whose weights live in the fp16 file
`t2s_shared_fp16.bin`, and their MatMuls read the weights through `Transpose` nodes, so onnxruntime's
`quantize_dynamic` on the template as it is quantizes nothing ("non constant B"). So:

1. expand: the template with its fp16 weights as fp32 initializers, in memory;
2. fold: onnxruntime's basic (portable) offline optimisation saved to a file, which constant-folds those
   `Transpose` nodes into plain weight initializers;
3. quantize: dynamic int8, per output channel, on MatMul and Gather (`MatMulConstBOnly`: the attention
   products of activations stay fp32). Activations are quantized per run, so no calibration data is needed.

Each decoder becomes one self-contained file (about a quarter of its fp32 weights). Only the decoders are
quantized: the vocoder's convolutions get slower and worse in int8 on CPU. What int8 changes in the tokens is
measured by `python -m bench.fidelity`, never assumed; it has not been checked on a trained voice here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto

from engine.models.model_files import T2S_DECODERS, T2S_WEIGHTS

#: fp32 template -> the int8 file written beside it.
INT8_FILES = dict(zip(T2S_DECODERS["fp32"], T2S_DECODERS["int8"], strict=True))
QUANTIZED_OPS = ("MatMul", "Gather")
#: Nodes that show a MatMul really runs in int8 (onnxruntime writes one or the other).
INT8_MATMUL_OPS = {"MatMulInteger", "DynamicQuantizeMatMul"}
#: A decoder has 24 layers of 6 weight MatMuls (q, k, v folded into one in the templates: at least 4 per layer).
MIN_INT8_MATMULS = 24 * 4


class QuantizeError(RuntimeError):
    """The voice's decoders cannot be quantized; the message says why."""


@dataclass(frozen=True)
class QuantizeReport:
    source: str
    target: str
    int8_matmuls: int
    fp32_matmuls: int
    megabytes: float

    def line(self) -> str:
        return (
            f"{self.target}: {self.int8_matmuls} MatMuls in int8 ({self.fp32_matmuls} left in fp32, "
            f"activation products), {self.megabytes:.0f} MB"
        )


def int8_paths(models: Path) -> tuple[Path, Path]:
    """(first-stage, stage) int8 decoder files of a voice's tts_models/ folder."""
    first, stage = T2S_DECODERS["int8"]
    return models / first, models / stage


def expand_fp16_weights(template: Path, fp16_weights: Path) -> onnx.ModelProto:
    """The template with every external initializer read from the fp16 file as fp32 (offsets count fp32 bytes)."""
    model = onnx.load(template, load_external_data=False)
    halves = np.memmap(fp16_weights, dtype=np.float16, mode="r")
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        start, count = int(info.get("offset", 0)) // 4, int(info["length"]) // 4
        if start + count > halves.size:
            raise QuantizeError(f"{fp16_weights.name} is shorter than {template.name} needs (tensor {tensor.name})")
        tensor.raw_data = np.asarray(halves[start : start + count], dtype=np.float32).tobytes()
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT
    return model


def fold_constants(model: onnx.ModelProto, target: Path) -> None:
    """onnxruntime's basic offline optimisation (constant folding, no hardware-specific fusions) saved to `target`."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def count_ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def quantize_decoder(
    template: Path, fp16_weights: Path, target: Path, min_int8_matmuls: int = MIN_INT8_MATMULS
) -> QuantizeReport:
    """Expand, fold and quantize one decoder into `target` (written whole, then renamed into place).

    Fails unless at least `min_int8_matmuls` MatMuls run in int8: quantize_dynamic skips what it cannot
    quantize without a word, which would leave an "int8" file that is fp32 in all but name.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415  (heavy; only this command needs it)

    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=target.parent) as scratch:
        folded = Path(scratch) / "folded.onnx"
        fold_constants(expand_fp16_weights(template, fp16_weights), folded)
        partial = Path(scratch) / "int8.onnx"
        quantize_dynamic(
            folded,
            partial,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True},
        )
        ops = count_ops(onnx.load(partial, load_external_data=False))
        int8_matmuls = sum(ops[name] for name in INT8_MATMUL_OPS)
        if int8_matmuls < min_int8_matmuls:
            raise QuantizeError(
                f"{template.name}: only {int8_matmuls} MatMuls were quantized (expected at least {min_int8_matmuls}): "
                "not the decoder graph this command knows"
            )
        os.replace(partial, target)
    return QuantizeReport(template.name, target.name, int8_matmuls, ops["MatMul"], target.stat().st_size / 1e6)


def quantize_voice(models: Path, force: bool = False) -> list[QuantizeReport]:
    """Write both int8 decoders into a voice's tts_models/ folder (skipped when present, unless `force`)."""
    weights = models / T2S_WEIGHTS
    if not weights.is_file():
        raise QuantizeError(f"{weights} is missing: is {models} a voice's tts_models/ folder?")
    reports = []
    for source, target in INT8_FILES.items():
        if (models / target).is_file() and not force:
            continue
        if not (models / source).is_file():
            raise QuantizeError(f"{models / source} is missing")
        reports.append(quantize_decoder(models / source, weights, models / target))
    return reports


def models_folder(path: Path) -> Path:
    """Accept a voice folder or its tts_models/ folder."""
    return path / "tts_models" if (path / "tts_models").is_dir() else path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.tools.quantize",
        description="Write int8 T2S decoders (t2s_*_int8.onnx) into a voice folder, for T2S_PRECISION=int8.",
    )
    parser.add_argument("voice", type=Path, nargs="+", help="voice folders (models/<name>) or their tts_models/ folders")
    parser.add_argument("--force", action="store_true", help="rewrite int8 files that already exist")
    args = parser.parse_args(argv)
    for voice in args.voice:
        started = time.perf_counter()
        try:
            reports = quantize_voice(models_folder(voice), force=args.force)
        except (QuantizeError, OSError, onnx.onnx_cpp2py_export.checker.ValidationError) as error:
            print(f"ERROR {voice}: {error}", file=sys.stderr)
            return 1
        for report in reports:
            print(report.line())
        print(f"{voice}: int8 decoders ready ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
