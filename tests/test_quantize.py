"""engine/tools/quantize.py on a small decoder-shaped template (unit), and the T2S_PRECISION file choice.

The template mimics what makes Genie's decoders hard to quantize: fp16 weights in a separate file whose
offsets count fp32 bytes, torch-layout weights reaching their MatMuls through Transpose nodes, an embedding
read by Gather. The real decoders are quantized in tests/test_int8_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from engine.models.t2s_precision import MissingInt8Decoders, decoder_files
from engine.tools import quantize

WIDTH, HIDDEN, VOCAB, TOKENS = 64, 128, 50, 6


def write_template(folder: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A template graph and its fp16 weight file, as Genie ships a decoder; returns the fp32 weights too."""
    rng = np.random.default_rng(3)
    weights = {
        "embedding": rng.standard_normal((VOCAB, WIDTH)).astype(np.float32),
        "linear1": (rng.standard_normal((HIDDEN, WIDTH)) * 0.2).astype(np.float32),  # torch layout: [out, in]
        "linear2": (rng.standard_normal((VOCAB, HIDDEN)) * 0.2).astype(np.float32),
    }
    initializers, blob, offset = [], bytearray(), 0
    for name, array in weights.items():
        halves = array.astype(np.float16)
        tensor = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "weights_fp16.bin"), ("offset", str(offset)), ("length", str(array.nbytes))):
            tensor.external_data.add(key=key, value=value)
        initializers.append(tensor)
        blob += halves.tobytes()
        offset += array.nbytes  # offsets count fp32 bytes, as in Genie's templates
        weights[name] = halves.astype(np.float32)  # what the expanded graph really holds
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "tokens"], ["embedded"]),
            helper.make_node("Add", ["x", "embedded"], ["h"]),
            helper.make_node("Transpose", ["linear1"], ["linear1_t"], perm=[1, 0]),
            helper.make_node("MatMul", ["h", "linear1_t"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("Transpose", ["linear2"], ["linear2_t"], perm=[1, 0]),
            helper.make_node("MatMul", ["h2", "linear2_t"], ["logits"]),
        ],
        "decoder_like",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, WIDTH]),
            helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, TOKENS]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, TOKENS, VOCAB])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    template, fp16 = folder / "decoder_fp32.onnx", folder / "weights_fp16.bin"
    onnx.save(model, template)
    fp16.write_bytes(bytes(blob))
    return template, fp16, weights


def feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "x": rng.standard_normal((1, TOKENS, WIDTH)).astype(np.float32),
        "tokens": rng.integers(0, VOCAB, (1, TOKENS)).astype(np.int64),
    }


def run(model: onnx.ModelProto | Path) -> np.ndarray:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, feed())[0]


def test_expanding_reads_the_fp16_file_at_fp32_offsets(tmp_path: Path) -> None:
    template, fp16, weights = write_template(tmp_path)
    expanded = quantize.expand_fp16_weights(template, fp16)
    # every weight of the template, each once: the loop below checks them all, not whatever happens to be left
    assert sorted(tensor.name for tensor in expanded.graph.initializer) == sorted(weights)
    for tensor in expanded.graph.initializer:
        assert tensor.data_location == TensorProto.DEFAULT
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(tensor), weights[tensor.name])


def test_the_template_as_it_is_quantizes_nothing(tmp_path: Path) -> None:
    """Why the constant folding: the weights reach the MatMuls through Transpose, so quantize_dynamic skips them."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    template, fp16, _ = write_template(tmp_path)
    quantize_dynamic(
        quantize.expand_fp16_weights(template, fp16),
        tmp_path / "unfolded_int8.onnx",
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": True},
    )
    ops = quantize.count_ops(onnx.load(tmp_path / "unfolded_int8.onnx"))
    assert sum(ops[name] for name in quantize.INT8_MATMUL_OPS) == 0 and ops["MatMul"] == 2


def test_every_weight_matmul_and_the_embedding_run_in_int8_and_the_logits_stay_close(tmp_path: Path) -> None:
    template, fp16, _ = write_template(tmp_path)
    report = quantize.quantize_decoder(template, fp16, tmp_path / "decoder_int8.onnx", min_int8_matmuls=2)

    model = onnx.load(tmp_path / "decoder_int8.onnx")
    ops = quantize.count_ops(model)
    assert (report.int8_matmuls, report.fp32_matmuls) == (2, 0)
    assert sum(ops[name] for name in quantize.INT8_MATMUL_OPS) == 2 and ops["MatMul"] == 0
    eight_bit = {tensor.name for tensor in model.graph.initializer if tensor.data_type in (TensorProto.INT8, TensorProto.UINT8)}
    assert {"embedding_quantized", "linear1_t_quantized", "linear2_t_quantized"} <= eight_bit  # the Gather's table too
    assert not any(tensor.data_location == TensorProto.EXTERNAL for tensor in model.graph.initializer)  # self-contained

    reference = run(quantize.expand_fp16_weights(template, fp16))
    quantized = run(tmp_path / "decoder_int8.onnx")
    error = np.abs(quantized - reference).max() / np.abs(reference).max()
    assert error < 0.05, f"int8 logits differ from fp32 by {error:.3f} of their range"
    agree = np.mean(quantized.argmax(-1) == reference.argmax(-1))
    assert agree >= 5 / 6


def test_a_graph_that_does_not_quantize_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    template, fp16, _ = write_template(tmp_path)
    with pytest.raises(quantize.QuantizeError, match="only 2 MatMuls were quantized"):
        quantize.quantize_decoder(template, fp16, tmp_path / "decoder_int8.onnx")  # the real decoders' minimum
    assert sorted(path.name for path in tmp_path.iterdir()) == ["decoder_fp32.onnx", "weights_fp16.bin"]


def test_quantize_voice_needs_a_voice_folder(tmp_path: Path) -> None:
    with pytest.raises(quantize.QuantizeError, match="t2s_shared_fp16.bin is missing"):
        quantize.quantize_voice(tmp_path)
    assert quantize.main([str(tmp_path)]) == 1


def test_precision_picks_the_decoder_files(tmp_path: Path) -> None:
    models = tmp_path / "voice" / "tts_models"
    models.mkdir(parents=True)
    first, stage, weights = decoder_files(models, "fp32")
    assert (first.name, stage.name, weights) == (
        "t2s_first_stage_decoder_fp32.onnx",
        "t2s_stage_decoder_fp32.onnx",
        models / "t2s_shared_fp16.bin",
    )
    with pytest.raises(MissingInt8Decoders) as missing:
        decoder_files(models, "int8")
    message = str(missing.value)
    assert f"python -m engine.tools.quantize {models.parent}" in message and "T2S_PRECISION=fp32" in message
    for path in quantize.int8_paths(models):
        path.write_bytes(b"graph")
    assert decoder_files(models, "int8") == (*quantize.int8_paths(models), None)
    with pytest.raises(ValueError, match="fp32, int8"):
        decoder_files(models, "fp16")
