"""Model files that are present but hold no model: Git LFS pointers and truncated weight files.

A repository cloned without Git LFS leaves a small text pointer where each large file should be, and an
interrupted copy leaves a short one. Genie's fp16 loader only warns for each tensor it cannot find, so
such a voice would pass a presence check and fail later with a message that names neither file.
Reading the graphs without their external data takes a fraction of a second, so this runs on every check.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from engine.models.model_files import FP16_WEIGHTS

#: The first line of every Git LFS pointer file (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def is_lfs_pointer(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(LFS_POINTER)) == LFS_POINTER


def lfs_pointer_message(path: Path) -> str:
    return f"{path} is a Git LFS pointer, not the file: run `git lfs pull` in the repository (or download the real file)"


def weight_problem(models: Path, names: Iterable[str]) -> str | None:
    """The first of `names` (files in `models`) that is an LFS pointer, an unreadable graph or too short a
    weight file for the graphs that read it; None when all are whole."""
    names = list(names)
    for name in names:
        if is_lfs_pointer(models / name):
            return lfs_pointer_message(models / name)
    needed: dict[str, tuple[int, str]] = {}  # weight file -> (bytes needed, the graph that needs the most)
    for graph in (name for name in names if name.endswith(".onnx")):
        try:
            spans = external_spans(models / graph)
        except (DecodeError, OSError, KeyError, ValueError) as error:
            return f"{models / graph} is not a readable ONNX graph: {error!r}"
        for location, end in spans.items():
            weights, size = (FP16_WEIGHTS[graph], end // 2) if graph in FP16_WEIGHTS else (location, end)
            if size > needed.get(weights, (0, ""))[0]:
                needed[weights] = (size, graph)
    for weights, (size, graph) in needed.items():
        path = models / weights
        if not path.is_file():
            return f"{graph} reads its weights from {weights}, which is missing"
        actual = path.stat().st_size
        if actual < size:
            return f"{path} is truncated: {actual} bytes, the graph {graph} needs at least {size} (copy or download it again)"
    return None


def external_spans(graph: Path) -> dict[str, int]:
    """External-data file named by the graph -> the largest offset + length any initializer reads from it."""
    model = onnx.load(str(graph), load_external_data=False)
    spans: dict[str, int] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        end = int(info.get("offset", 0)) + int(info.get("length", 0))
        spans[info["location"]] = max(spans.get(info["location"], 0), end)
    return spans
