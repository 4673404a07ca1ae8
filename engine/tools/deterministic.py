"""Deterministic copies of a voice's graphs, for the exactness test and the fidelity measurement only.

The T2S decoders sample inside the graph: the penalised, top-k-filtered logits go through a Softmax, which is
divided by a `RandomNormalLike` draw before the `ArgMax` that picks the token. The vocoder adds
`RandomNormalLike` noise to the prior's mean. So two runs of the same text differ, and nothing can be compared
token for token. Here each `RandomNormalLike` becomes `ConstantOfShape(Shape(x))`: 1.0 in the decoders (the
division is then a no-op and the `ArgMax` is greedy decoding over the same penalised logits) and 0.0 in the
vocoder (no noise: the prior's mean). A fixed `seed` attribute would not do: onnxruntime draws a new value at
every run of a session from a generator seeded once, so the result depends on the session's history.

Never served: the rewritten graphs go to a scratch folder that mirrors the voice (other files are symlinks).

    python -m engine.tools.deterministic VOICE_DIR SCRATCH_DIR
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from engine.models.model_files import T2S_DECODERS, VOCODER

#: Graph file -> the value that replaces its random draw (1: greedy sampling, 0: no noise).
DECODER_FILES = (*T2S_DECODERS["fp32"], *T2S_DECODERS["int8"])
VOCODER_FILE = VOCODER
RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


class NotDeterministic(ValueError):
    """A graph has a random operator this module does not know how to pin."""


def pin_random(model: onnx.ModelProto, value: float) -> int:
    """Replace every `RandomNormalLike` by a tensor of `value` with its input's shape; return how many."""
    graph = model.graph
    others = sorted({node.op_type for node in graph.node if node.op_type in RANDOM_OPS - {"RandomNormalLike"}})
    if others:
        raise NotDeterministic(f"{graph.name}: random operators {', '.join(others)} cannot be pinned")
    replaced = 0
    nodes = []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        shape = f"{node.output[0]}__pinned_shape"
        fill = helper.make_tensor(f"{node.output[0]}__pinned_value", TensorProto.FLOAT, [1], [value])
        nodes.append(helper.make_node("Shape", [node.input[0]], [shape], name=f"{node.name}__pinned_shape"))
        nodes.append(helper.make_node("ConstantOfShape", [shape], [node.output[0]], name=f"{node.name}__pinned", value=fill))
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced


def pin_file(source: Path, target: Path, value: float) -> int:
    """`pin_random` on a graph file, weights (embedded or external) left where they are."""
    model = onnx.load(source, load_external_data=False)
    count = pin_random(model, value)
    if count == 0:
        raise NotDeterministic(f"{source.name} has no RandomNormalLike node: not the graph this module expects")
    onnx.save(model, target)
    return count


def deterministic_voice(voice_dir: Path, scratch: Path) -> Path:
    """A copy of `voice_dir` at `scratch/<name>` whose decoders are greedy and whose vocoder is noise-free.

    Weight files and everything else are symlinks to the original; the rewritten graphs keep their file
    names, so the copy loads exactly as the voice does (including int8 decoders when the voice has them).
    """
    target = scratch / voice_dir.name
    if target.exists():
        shutil.rmtree(target)
    models = voice_dir / "tts_models"
    (target / "tts_models").mkdir(parents=True)
    (target / "reference").symlink_to((voice_dir / "reference").resolve(), target_is_directory=True)
    for entry in sorted((voice_dir).iterdir()):
        if entry.name not in {"tts_models", "reference"}:
            (target / entry.name).symlink_to(entry.resolve())
    pinned = {name: 1.0 for name in DECODER_FILES} | {VOCODER_FILE: 0.0}
    for entry in sorted(models.iterdir()):
        if entry.name in pinned:
            pin_file(entry, target / "tts_models" / entry.name, pinned[entry.name])
        else:
            (target / "tts_models" / entry.name).symlink_to(entry.resolve())
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a greedy, noise-free copy of a voice folder (tests only).")
    parser.add_argument("voice", type=Path, help="a voice folder (with tts_models/ and reference/)")
    parser.add_argument("scratch", type=Path, help="where to write <scratch>/<voice name>/")
    args = parser.parse_args(argv)
    print(deterministic_voice(args.voice, args.scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
