"""The stage decoder rewritten for an in-place KV cache (engine/models/decoder_graph.py) computes what Genie's graph does.

The structural tests read Genie's template (no weights needed). The equality tests run the demo voice with
its sampling made deterministic (the `RandomNormalLike` draw replaced by ones: greedy decoding over the same
penalised logits), the original and the rewritten graph side by side from the same first-stage state.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine.genie import package_data_dir
from engine.models.decoder_graph import SEQLENS, TOTAL, UnsupportedGraph, rewrite_stage_decoder

TEMPLATE = package_data_dir() / "v2/Models/t2s_stage_decoder_fp32.onnx"
LAYERS = 24


def template() -> onnx.ModelProto:
    return onnx.load(TEMPLATE, load_external_data=False)


def test_every_layer_attends_through_one_in_place_node() -> None:
    original = template()
    rewritten = rewrite_stage_decoder(original)
    attention = [node for node in rewritten.graph.node if node.op_type == "GroupQueryAttention"]
    assert len(attention) == LAYERS
    for index in range(LAYERS):
        node = next(node for node in attention if f"past_k_layer_{index}" in node.input)
        # past and present are the same names the caller binds to one buffer
        assert list(node.input[3:7]) == [f"past_k_layer_{index}", f"past_v_layer_{index}", SEQLENS, TOTAL]
        assert list(node.output[1:]) == [f"present_k_layer_{index}", f"present_v_layer_{index}"]
    inputs = {item.name: item for item in rewritten.graph.input}
    dims = [dim.dim_value or dim.dim_param for dim in inputs["past_v_layer_7"].type.tensor_type.shape.dim]
    assert dims == [1, 16, "kv_capacity", 32]
    assert [item.name for item in rewritten.graph.output] == [item.name for item in original.graph.output]
    assert not [node for node in rewritten.graph.node if node.op_type == "Concat" and node.input[0].startswith("past_")]
    assert len(rewritten.graph.node) < len(original.graph.node) * 0.7
    onnx.shape_inference.infer_shapes(rewritten, check_type=True, strict_mode=True)  # well-typed, in order


def test_a_graph_that_reads_its_cache_otherwise_is_refused() -> None:
    model = template()
    model.graph.node.append(helper.make_node("ReduceSum", ["past_k_layer_3"], ["cache_sum"]))
    model.graph.output.append(helper.make_tensor_value_info("cache_sum", TensorProto.FLOAT, None))
    with pytest.raises(UnsupportedGraph, match="past_k_layer_3"):
        rewrite_stage_decoder(model)


def test_a_graph_without_a_cache_is_refused() -> None:
    model = onnx.load(package_data_dir() / "v2/Models/t2s_first_stage_decoder_fp32.onnx", load_external_data=False)
    with pytest.raises(UnsupportedGraph):
        rewrite_stage_decoder(model)


def pin_random(model: onnx.ModelProto) -> onnx.ModelProto:
    """Test only: greedy sampling (every RandomNormalLike becomes ones), as engine/tools/deterministic.py does."""
    from engine.tools.deterministic import pin_random as pin

    assert pin(model, 1.0) > 0
    return model


def expose_logits(model: onnx.ModelProto) -> str:
    """Make the logits (the MatMul output the EOS ArgMax reads) a graph output; return its name."""
    producers = {output: node for node in model.graph.node for output in node.output}
    name = next(
        node.input[0]
        for node in model.graph.node
        if node.op_type == "ArgMax" and node.input[0] in producers and producers[node.input[0]].op_type == "MatMul"
    )
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return name


@pytest.fixture(scope="module")
def greedy(demo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo voice with deterministic first-stage, original and rewritten stage decoders (logits exposed)."""
    from engine.genie import import_genie
    from engine.models.sessions import in_memory_session
    from engine.voices.voice import SharedModels, load_voice
    from engine.voices.voice_folder import inspect_voice

    import_genie(demo_root / "GenieData")
    voice = load_voice(inspect_voice(demo_root / "demo"), SharedModels.load(demo_root / "GenieData", threads=2), threads=2)
    models, scratch = demo_root / "demo/tts_models", tmp_path_factory.mktemp("greedy")
    weights = models / "t2s_shared_fp16.bin"
    first = pin_random(onnx.load(models / "t2s_first_stage_decoder_fp32.onnx", load_external_data=False))
    stage = pin_random(onnx.load(models / "t2s_stage_decoder_fp32.onnx", load_external_data=False))
    logits = expose_logits(stage)
    graphs = {"first": first, "original": stage, "rewritten": rewrite_stage_decoder(stage)}
    sessions = {}
    for name, model in graphs.items():
        onnx.save(model, scratch / f"{name}.onnx")
        sessions[name] = in_memory_session(scratch / f"{name}.onnx", weights, threads=2)
    voice = dataclasses.replace(voice, first_stage_decoder=sessions["first"])
    return voice, sessions["original"], sessions["rewritten"], logits


TEXTS = ("こんにちは。", "今日はとてもいい天気ですね、散歩に行きましょう。", "むかしむかし、ある山のふもとに。")


def first_stage(voice, text: str) -> list[np.ndarray]:
    """y, y_emb and the KV cache after the first-stage decoder, as SegmentDecoder starts a segment."""
    from engine.synthesis.decoding import encode
    from engine.text.g2p import text_to_phonemes

    x, prompts = encode(voice, text_to_phonemes(text, "ja"), voice.reference)
    return list(voice.first_stage_decoder.run(None, {"x": x, "prompts": prompts}))


@pytest.mark.e2e
@pytest.mark.parametrize("text", TEXTS)
def test_the_rewritten_graph_gives_the_same_logits_at_every_step(greedy, text: str) -> None:
    from engine.synthesis.decoding import _BufferSteps

    voice, original, rewritten, logits = greedy

    class Probe(_BufferSteps):
        OUTPUTS = (*_BufferSteps.OUTPUTS, logits)  # bound first: get_outputs()[3]

    state = first_stage(voice, text)
    probe = Probe(rewritten, state, prompt_length=0, cap=200)
    names = [item.name for item in original.get_inputs()]
    for step in range(150):
        y, y_emb, stop, *cache, expected = original.run(None, dict(zip(names, state, strict=True)))
        state = [y, y_emb, *cache]
        stopped = probe.step()
        got = probe.binding.get_outputs()[3].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"logits at step {step}")
        assert np.array_equal(probe.sequence(), y) and stopped == bool(stop), f"step {step}"


@pytest.mark.e2e
@pytest.mark.parametrize("text", TEXTS)
def test_segments_decode_to_the_same_tokens_on_both_paths(greedy, text: str) -> None:
    """The whole segment through SegmentDecoder: the array path on Genie's graph, the buffer path on ours."""
    from engine.text.g2p import text_to_phonemes
    from tests.engine_helpers import text_to_tokens

    voice, original, rewritten, _ = greedy
    phonemes = text_to_phonemes(text, "ja")
    tokens = {
        name: text_to_tokens(dataclasses.replace(voice, stage_decoder=session), phonemes, voice.reference, threading.Event())
        for name, session in (("original", original), ("rewritten", rewritten))
    }
    assert tokens["original"].values.size == 2 * phonemes.count + 1  # the demo's length rule ended both
    assert np.array_equal(tokens["original"].values, tokens["rewritten"].values)
