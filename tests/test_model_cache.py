"""The model cache (engine/models/model_cache.py) and the session loader on it (engine/models/sessions.py), on small real graphs.

Each graph is built like Genie's templates: its weight is external data at an fp32 offset, stored in a
separate fp16 file, so the cache's expansion, optimisation and loading all run for real.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from engine.models.model_cache import ModelCache, cache_key
from engine.models.sessions import SessionLoader, WeightPool

ROWS, COLUMNS = 128, 256  # 128 KB in fp32: above the pool's sharing threshold


def write_template(folder: Path, name: str, scale: float = 1.0) -> tuple[Path, Path, np.ndarray]:
    """A Y = (X @ W) * scale graph whose W lives in an fp16 file (template offsets count fp32 bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    weight = np.random.default_rng(0).standard_normal((ROWS, COLUMNS)).astype(np.float16)
    fp16 = folder / "weights_fp16.bin"
    weight.tofile(fp16)
    tensor = helper.make_tensor_value_info("W", TensorProto.FLOAT, [ROWS, COLUMNS])
    initializer = onnx.TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[ROWS, COLUMNS])
    initializer.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "absent_fp32.bin", "offset": "0", "length": str(ROWS * COLUMNS * 4)}.items():
        initializer.external_data.add(key=key, value=value)
    scale_tensor = helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["P"]), helper.make_node("Mul", ["P", "scale"], ["Y"])],
        name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, ROWS])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, COLUMNS])],
        [initializer, scale_tensor],
        value_info=[tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    return path, fp16, weight.astype(np.float32)


def run(session: onnxruntime.InferenceSession) -> np.ndarray:
    x = np.linspace(-1, 1, ROWS, dtype=np.float32)[None, :]
    return session.run(None, {"X": x})[0]


def expected(weight: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return (np.linspace(-1, 1, ROWS, dtype=np.float32)[None, :] @ weight) * scale


def test_a_cached_graph_computes_what_the_template_and_its_fp16_weights_say(tmp_path: Path) -> None:
    graph, fp16, weight = write_template(tmp_path / "voice", "g")
    loader = SessionLoader(1, ModelCache(tmp_path / "cache"))
    np.testing.assert_allclose(run(loader.session(graph, fp16)), expected(weight), rtol=1e-5, atol=1e-5)
    entries = [path for path in (tmp_path / "cache").iterdir() if not path.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "model.onnx.data").stat().st_size >= ROWS * COLUMNS * 4


def test_the_key_follows_the_content_of_every_source_file(tmp_path: Path) -> None:
    graph, fp16, _ = write_template(tmp_path, "g")
    before = cache_key(graph, fp16)
    assert cache_key(graph, fp16) == before
    data = bytearray(fp16.read_bytes())
    data[10] ^= 0x01
    fp16.write_bytes(bytes(data))  # same size, same name, one bit of one weight
    after_weights = cache_key(graph, fp16)
    assert after_weights != before
    write_template(tmp_path, "g", scale=2.0)  # a graph change alone (the weights are rewritten identical)
    fp16.write_bytes(bytes(data))
    assert cache_key(graph, fp16) not in (before, after_weights)


def test_a_changed_weight_file_gets_a_new_entry_and_new_results(tmp_path: Path) -> None:
    graph, fp16, weight = write_template(tmp_path / "voice", "g")
    cache = ModelCache(tmp_path / "cache")
    loader = SessionLoader(1, cache)
    run(loader.session(graph, fp16))
    (-weight).astype(np.float16).tofile(fp16)
    np.testing.assert_allclose(run(loader.session(graph, fp16)), expected(-weight), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("damage", ["truncated data", "garbage graph", "no manifest"])
def test_a_damaged_entry_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    graph, fp16, weight = write_template(tmp_path / "voice", "g")
    cache = ModelCache(tmp_path / "cache")
    folder = cache.get(graph, fp16).folder
    if damage == "truncated data":
        (folder / "model.onnx.data").write_bytes(b"\0" * 100)
    elif damage == "garbage graph":  # same size, so only loading it can tell
        size = (folder / "model.onnx").stat().st_size
        (folder / "model.onnx").write_bytes(b"\xff" * size)
    else:
        (folder / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING):
        session = SessionLoader(1, cache).session(graph, fp16)
    np.testing.assert_allclose(run(session), expected(weight), rtol=1e-5, atol=1e-5)
    assert "rebuilding" in caplog.text
    assert cache.get(graph, fp16).folder == folder  # whole again under the same key


def test_an_unwritable_cache_falls_back_to_memory_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cache folder that cannot be created (here its parent is a file: root ignores permission bits)."""
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    graph, fp16, weight = write_template(tmp_path / "voice", "g")
    plain = tmp_path / "plain.onnx"  # no fp16 file: the in-memory path needs no Genie import
    model = onnx.load(str(graph), load_external_data=False)
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weight, "W"))
    onnx.save(model, str(plain))
    loader = SessionLoader(1, ModelCache(blocker / "models"))
    with caplog.at_level(logging.WARNING):
        first = loader.session(plain, None)
        second = loader.session(plain, None)
    np.testing.assert_allclose(run(first), expected(weight), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run(second), expected(weight), rtol=1e-5, atol=1e-5)
    assert loader.cache is None
    assert caplog.text.count("model cache off") == 1


def test_sessions_fed_from_one_pool_hold_one_copy_of_equal_weights(tmp_path: Path) -> None:
    """Two graphs on the same fp16 file (the T2S decoders' case): the pool maps the weight once for both."""
    first, fp16, weight = write_template(tmp_path / "voice", "first")
    second, _, _ = write_template(tmp_path / "voice", "second", scale=3.0)
    loader = SessionLoader(1, ModelCache(tmp_path / "cache"))
    pool = WeightPool()
    one = loader.session(first, fp16, pool)
    two = loader.session(second, fp16, pool)
    assert pool.nbytes == ROWS * COLUMNS * 4
    np.testing.assert_allclose(run(one), expected(weight), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run(two), expected(weight, 3.0), rtol=1e-5, atol=1e-5)


def if_graph(folder: Path, repeats: list[float]) -> Path:
    """Y = cond ? X + c : X, whose then-branch holds the initializer `c` once per value of `repeats` (onnxruntime
    1.22 writes such repeats into its own optimised save of a graph with `If`, the prompt encoder)."""
    folder.mkdir(parents=True, exist_ok=True)
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["X", "c"], ["then_y"])],
        "then",
        [],
        [helper.make_tensor_value_info("then_y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("c", TensorProto.FLOAT, [1], [value]) for value in repeats],
    )
    else_output = helper.make_tensor_value_info("else_y", TensorProto.FLOAT, [1])
    else_branch = helper.make_graph([helper.make_node("Identity", ["X"], ["else_y"])], "else", [], [else_output])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["Y"], then_branch=then_branch, else_branch=else_branch)],
        "if",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])],
    )
    path = folder / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_a_repeated_initializer_in_a_subgraph_is_dropped_so_the_graph_loads(tmp_path: Path) -> None:
    from engine.models.model_cache import _drop_repeated_initializers

    path = if_graph(tmp_path, [2.0, 2.0])
    with pytest.raises(Exception, match="not unique"):
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert _drop_repeated_initializers(path) == 1
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"X": np.array([1.0], np.float32), "cond": np.array(True)}
    assert session.run(None, feed)[0].tolist() == [3.0]

    differing = if_graph(tmp_path / "differing", [2.0, 5.0])  # which one is meant is unknown: left as it is
    assert _drop_repeated_initializers(differing) == 0
