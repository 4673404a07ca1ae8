"""A deterministic copy of a voice's vocoder graph, for tests only: its one random node (the VITS noise,
RandomNormalLike) becomes zeros, so two runs on the same input give the same audio and chunked vocoding can be
compared with the whole-segment vocoder sample by sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import helper, numpy_helper


def deterministic_vocoder(template: Path, fp16_weights: Path, scratch: Path) -> Path:
    """Write `template` with its fp16 weights expanded to fp32 and its RandomNormalLike replaced by x * 0."""
    model = onnx.load(str(template), load_external_data=False)
    weights = np.fromfile(fp16_weights, dtype=np.float16).astype(np.float32).tobytes()
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        place = {entry.key: int(entry.value) for entry in tensor.external_data if entry.key in ("offset", "length")}
        tensor.raw_data = weights[place["offset"] : place["offset"] + place["length"]]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    randoms = [node for node in model.graph.node if node.op_type == "RandomNormalLike"]
    assert len(randoms) == 1, f"expected the one VITS noise node, found {len(randoms)}"
    noise = randoms[0]
    zero_name = f"{noise.name}/zero"
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype=np.float32), zero_name))
    index = list(model.graph.node).index(noise)
    model.graph.node.remove(noise)
    model.graph.node.insert(index, helper.make_node("Mul", [noise.input[0], zero_name], [noise.output[0]], name=noise.name))
    path = scratch / "vits_deterministic.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="vits_deterministic.bin")
    return path


def load_deterministic_vocoder(models: Path, scratch: Path, threads: int = 2) -> onnxruntime.InferenceSession:
    from engine.sessions import PROVIDERS, session_options  # noqa: PLC0415

    path = deterministic_vocoder(models / "vits_fp32.onnx", models / "vits_fp16.bin", scratch)
    return onnxruntime.InferenceSession(str(path), session_options(threads), providers=PROVIDERS)
