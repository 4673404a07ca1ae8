"""Rewrite the T2S stage decoder so its KV cache lives in one pre-allocated buffer per layer, written in place.

Genie's stage decoder takes the whole cache (`past_k_layer_i` [past_len, 1, 512]) and returns it grown by one
entry: every step each layer concatenates its cache, then transposes and scales a copy of it for the
attention. At a few hundred tokens that copying costs about as much as the matrix products. Here each
layer's attention (from the cache concatenation to the attention output) becomes one onnxruntime
`GroupQueryAttention` node whose past and present cache are the same buffer, [1, heads, capacity, head_size]:
the node writes the new entry at `seqlens_k` and attends over the first `total_sequence_length` entries.
The caller (engine/synthesis/decoding.py) binds one buffer per cache input and output, so nothing is copied per step.

The layers are found by the graph's interface names, not by node names (which differ between exports);
anything that does not look like the expected attention raises `UnsupportedGraph`, and the voice then keeps
the original graph. Valid for one new token and batch 1 (what the stage decoder always gets), where the
attention's [seq, batch, width] and [batch, heads, seq, head_size] layouts are the same memory.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

logger = logging.getLogger(__name__)
T = TypeVar("T")

PAST = re.compile(r"past_([kv])_layer_(\d+)$")
SEQLENS = "seqlens_k"  # int32 [1]: entries already in the cache (the new one is written there)
TOTAL = "total_sequence_length"  # int32 scalar: entries after this step
CAPACITY = "kv_capacity"
_MS_DOMAIN = "com.microsoft"
#: Ops between the cache and its attention MatMul, and between the query projection and that MatMul.
_LAYOUT_OPS = {"Reshape", "Transpose", "Unsqueeze", "Mul", "Div"}


class UnsupportedGraph(ValueError):
    """The graph does not have the attention structure this rewrite knows."""


def is_rewritten(input_names: list[str]) -> bool:
    return SEQLENS in input_names


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


class _Graph:
    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer = {output: node for node in graph.node for output in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def only_consumer(self, tensor: str, op_type: str) -> onnx.NodeProto:
        found = [node for node in self.consumers[tensor] if node.op_type == op_type]
        if len(found) != 1:
            raise UnsupportedGraph(f"{tensor}: expected one {op_type} consumer, found {len(found)}")
        return found[0]

    def downstream(self, tensor: str, op_type: str, limit: int = 12) -> onnx.NodeProto:
        """The first `op_type` node reached from `tensor` through layout ops and MatMuls."""
        frontier = [tensor]
        for _ in range(limit):
            following = []
            for name in frontier:
                for node in self.consumers[name]:
                    if node.op_type == op_type:
                        return node
                    if node.op_type in _LAYOUT_OPS | {"MatMul"}:
                        following.extend(node.output)
            frontier = following
        raise UnsupportedGraph(f"no {op_type} after {tensor}")

    def upstream_source(self, tensor: str) -> str:
        """Walk up the data input through layout ops: the tensor they reshape (the projected query)."""
        for _ in range(8):
            node = self.producer.get(tensor)
            if node is None or node.op_type not in _LAYOUT_OPS:
                return tensor
            tensor = node.input[0]
        raise UnsupportedGraph(f"too many layout ops above {tensor}")


def _heads(graph: _Graph, present: str) -> tuple[int, int]:
    """(heads, head_size) from the Reshape that splits the cache into heads, e.g. [-1, 16, 32]."""
    reshape = graph.only_consumer(present, "Reshape")
    shape = _constant(graph.graph, reshape.input[1])
    if shape is None or shape.size != 3 or shape[1] <= 0 or shape[2] <= 0:
        raise UnsupportedGraph(f"{present}: cannot read the head split from {reshape.name}")
    return int(shape[1]), int(shape[2])


def rewrite_stage_decoder(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose per-layer cache is a shared in-place buffer (see the module docstring)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    graph = _Graph(g)
    layers: dict[int, dict[str, str]] = defaultdict(dict)
    for item in g.input:
        match = PAST.match(item.name)
        if match:
            layers[int(match[2])][match[1]] = item.name
    if not layers or any(set(pair) != {"k", "v"} for pair in layers.values()):
        raise UnsupportedGraph("no past_k_layer_i / past_v_layer_i inputs")

    removed: set[int] = set()  # ids of nodes replaced by the attention node
    added: list[onnx.NodeProto] = []
    shapes: dict[str, tuple[int, int]] = {}
    for index in sorted(layers):
        concat = {kind: graph.only_consumer(layers[index][kind], "Concat") for kind in "kv"}
        if any(list(node.input)[0] != layers[index][kind] for kind, node in concat.items()):
            raise UnsupportedGraph(f"layer {index}: the cache is not the first Concat input")
        present = {kind: concat[kind].output[0] for kind in "kv"}
        heads, size = _heads(graph, present["k"])
        softmax = graph.downstream(present["k"], "Softmax")
        scores = graph.producer[softmax.input[0]]
        weighted = graph.only_consumer(softmax.output[0], "MatMul")
        if scores.op_type != "MatMul":
            raise UnsupportedGraph(f"layer {index}: Softmax input is {scores.op_type}, not MatMul")
        query_side = [name for name in scores.input if graph.upstream_source(name) not in present.values()]
        if len(query_side) != 1:
            raise UnsupportedGraph(f"layer {index}: cannot tell the query from the keys")
        query = graph.upstream_source(query_side[0])
        prefix = f"kv_layer_{index}"
        flat = f"{prefix}_width"
        g.initializer.append(numpy_helper.from_array(np.array([1, 1, heads * size], np.int64), flat))
        g.initializer.append(numpy_helper.from_array(np.array([1, heads, 1, size], np.int64), f"{prefix}_split"))
        for name, source in (("q", query), ("k", concat["k"].input[1]), ("v", concat["v"].input[1])):
            added.append(helper.make_node("Reshape", [source, flat], [f"{prefix}_{name}"], name=f"{prefix}_{name}"))
        added.append(
            helper.make_node(
                "GroupQueryAttention",
                [f"{prefix}_q", f"{prefix}_k", f"{prefix}_v", layers[index]["k"], layers[index]["v"], SEQLENS, TOTAL],
                [f"{prefix}_attention", present["k"], present["v"]],
                name=f"{prefix}_attention",
                domain=_MS_DOMAIN,
                num_heads=heads,
                kv_num_heads=heads,
            )
        )
        added.append(
            helper.make_node("Reshape", [f"{prefix}_attention", f"{prefix}_split"], [weighted.output[0]], name=f"{prefix}_out")
        )
        removed.update(id(node) for node in (concat["k"], concat["v"], weighted))
        shapes[layers[index]["k"]] = shapes[layers[index]["v"]] = (heads, size)

    kept = [node for node in g.node if id(node) not in removed]
    _redirect_cache_shapes(g, kept, added, layers, shapes)
    del g.node[:]
    _retype_interface(g, shapes, layers)
    g.node.extend(_topological(g, kept + added))
    _drop_dead_nodes(g)
    if not any(entry.domain == _MS_DOMAIN for entry in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    return model


def _redirect_cache_shapes(g, kept, added, layers, shapes) -> None:
    """Other readers of a cache input may only ask its shape: give them the old [past_len, 1, width]."""
    legacy: dict[str, str] = {}
    for node in kept:
        for position, name in enumerate(node.input):
            if name not in shapes:
                continue
            if node.op_type != "Shape" or len(node.attribute) > 0:
                raise UnsupportedGraph(f"{node.op_type} {node.name} reads the cache {name}")
            if name not in legacy:
                heads, size = shapes[name]
                legacy[name] = f"{name}_legacy_shape"
                g.initializer.append(numpy_helper.from_array(np.array([1, heads * size], np.int64), f"{name}_tail"))
                added.append(helper.make_node("Cast", [SEQLENS], [f"{name}_length"], to=TensorProto.INT64))
                added.append(helper.make_node("Concat", [f"{name}_length", f"{name}_tail"], [legacy[name]], axis=0))
            node.op_type = "Identity"
            node.input[position] = legacy[name]


def _drop_dead_nodes(g: onnx.GraphProto) -> None:
    needed = {output.name for output in g.output}
    kept = []
    for node in reversed(list(g.node)):
        if any(output in needed for output in node.output):
            kept.append(node)
            needed.update(node.input)
    del g.node[:]
    g.node.extend(reversed(kept))
    used = {name for node in g.node for name in node.input}
    initializers = [tensor for tensor in g.initializer if tensor.name in used]
    del g.initializer[:]
    g.initializer.extend(initializers)


def _topological(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Nodes in an order where each comes after the producers of its inputs (ONNX requires it)."""
    ready = {item.name for item in g.input} | {tensor.name for tensor in g.initializer} | {""}
    ordered: list[onnx.NodeProto] = []
    waiting = nodes
    while waiting:
        still = []
        for node in waiting:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                still.append(node)
        if len(still) == len(waiting):
            raise UnsupportedGraph(f"cycle or missing input at {still[0].name}")
        waiting = still
    return ordered


def _retype_interface(g: onnx.GraphProto, shapes, layers) -> None:
    cache_shape = {name: [1, heads, CAPACITY, size] for name, (heads, size) in shapes.items()}
    for item in g.input:
        if item.name in cache_shape:
            item.CopyFrom(helper.make_tensor_value_info(item.name, TensorProto.FLOAT, cache_shape[item.name]))
    for item in g.output:
        match = re.match(r"present_([kv])_layer_(\d+)$", item.name)
        if match:
            past = layers[int(match[2])][match[1]]
            item.CopyFrom(helper.make_tensor_value_info(item.name, TensorProto.FLOAT, cache_shape[past]))
    g.input.append(helper.make_tensor_value_info(SEQLENS, TensorProto.INT32, [1]))
    g.input.append(helper.make_tensor_value_info(TOTAL, TensorProto.INT32, []))


def optimise_decoder(source: Path, target: Path) -> None:
    """Write the rewritten stage decoder of `source` to `target`; weights (embedded or external) are untouched.

    External weight references are relative to the graph file, so `target` must sit beside `source`'s
    external weights when it has any.
    """
    model = onnx.load(source, load_external_data=False)
    external = any(tensor.data_location == TensorProto.EXTERNAL for tensor in model.graph.initializer)
    if external and source.resolve().parent != target.resolve().parent:
        raise ValueError(f"{source.name} has external weights: write the rewritten graph into {source.parent}")
    onnx.save(rewrite_stage_decoder(model), target)


def load_stage_decoder(template: Path, load: Callable[[Path], T]) -> T:
    """`load` applied to the rewritten `template`, or to `template` itself when the rewrite does not apply.

    The rewritten graph lives in a scratch folder only while `load` runs: its initializers keep the template's
    references, which Genie's fp16 loader resolves against the weight file it is given, not the folder.
    """
    try:
        model = rewrite_stage_decoder(onnx.load(template, load_external_data=False))
    except UnsupportedGraph as error:
        logger.warning("stage decoder %s kept as it is (%s): its KV cache is copied every step", template, error)
        return load(template)
    with tempfile.TemporaryDirectory() as scratch:
        rewritten = Path(scratch) / template.name
        onnx.save(model, rewritten)
        return load(rewritten)
