"""int8 T2S decoders on the demo voice: the demo builder's --int8, the quantized graphs, and a real server
with T2S_PRECISION=int8 that speaks (and refuses a voice without int8 files, saying how to make them)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from engine.tools import quantize
from tests.helpers import CACHE, client, start_demo_server, wav_info
from tests.server_process import ROOT, ServerProcess

pytestmark = pytest.mark.e2e

LOGITS = "/ar_predict_layer/MatMul_output_0"


@pytest.fixture(scope="module")
def int8_root() -> Path:
    """`python -m engine.tools.demo DIR --int8`, in a cache of its own (the shared demo stays fp32-only)."""
    from engine.voices.demo_voices import BUILD_VERSION

    root = CACHE / "int8" / f"demo-{BUILD_VERSION}"
    subprocess.run([sys.executable, "-m", "engine.tools.demo", str(root), "--int8"], cwd=ROOT, check=True, timeout=600)
    return root


@pytest.fixture(scope="module")
def int8_server(int8_root: Path, demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """DEMO=1 with T2S_PRECISION=int8, plus "plain": the test cache's demo voice, which has no int8 files."""
    models = tmp_path_factory.mktemp("int8-models")
    (models / "plain").symlink_to(demo_root / "demo", target_is_directory=True)
    env = {"T2S_PRECISION": "int8", "CACHE_DIR": str(CACHE / "int8"), "GENIE_DATA_DIR": str(int8_root / "GenieData")}
    process = start_demo_server("int8", models, env)
    yield process
    process.stop()


def with_logits(model: onnx.ModelProto) -> bytes:
    """The graph with the output projection's logits as an extra output."""
    model.graph.output.append(onnx.helper.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString()


def test_the_demo_builder_writes_int8_decoders_that_are_really_quantized(int8_root: Path) -> None:
    models = int8_root / "demo" / "tts_models"
    for path in quantize.int8_paths(models):
        ops = quantize.count_ops(onnx.load(path, load_external_data=False))
        assert sum(ops[name] for name in quantize.INT8_MATMUL_OPS) >= 97, path.name  # 24 layers x 4 + the output layer
        assert path.stat().st_size < 0.35 * 2 * (models / "t2s_shared_fp16.bin").stat().st_size  # vs the fp32 weights


def test_int8_logits_follow_fp32_for_a_fixed_input(int8_root: Path) -> None:
    models = int8_root / "demo" / "tts_models"
    fp32_model = quantize.expand_fp16_weights(models / "t2s_first_stage_decoder_fp32.onnx", models / "t2s_shared_fp16.bin")
    int8_model = onnx.load(quantize.int8_paths(models)[0])
    rng = np.random.default_rng(5)
    feed = {"x": rng.standard_normal((1, 40, 512)).astype(np.float32), "prompts": rng.integers(0, 1024, (1, 30))}
    outputs = []
    for model in (fp32_model, int8_model):
        session = onnxruntime.InferenceSession(with_logits(model), providers=["CPUExecutionProvider"])
        outputs.append(session.run([LOGITS], feed)[0].reshape(-1))
    fp32, int8 = outputs
    cosine = float(fp32 @ int8 / np.linalg.norm(fp32) / np.linalg.norm(int8))
    assert cosine > 0.98, f"int8 logits: cosine {cosine:.4f} to fp32's"
    assert np.abs(int8 - fp32).max() < 0.25 * np.abs(fp32).max()


def test_a_server_with_int8_decoders_speaks(int8_server: ServerProcess) -> None:
    audio = client(int8_server).audio.speech.create(
        model="demo", voice="demo", input="今日はとてもいい天気ですね。", response_format="wav"
    )
    rate, channels, _, seconds = wav_info(audio.content)
    assert (rate, channels) == (32000, 1) and seconds > 0.5
    samples = np.frombuffer(audio.content[44:], dtype=np.int16)
    assert np.any(samples)
    assert "t2s=int8" in int8_server.log_line("voice=demo outcome=loaded")


def test_a_voice_without_int8_decoders_is_skipped_with_the_command_that_makes_them(int8_server: ServerProcess) -> None:
    line = int8_server.log_line("voice=plain outcome=skipped")
    assert "python -m engine.tools.quantize" in line and "T2S_PRECISION=fp32" in line
    assert [model.id for model in client(int8_server).models.list().data] == ["demo"]
