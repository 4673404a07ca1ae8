"""Optimised fp32 graphs written once into CACHE_DIR, so later starts hand them to onnxruntime directly.

Genie ships graph templates whose weights are an fp16 file; its loader expands that file to fp32 in Python,
copies each tensor into the model proto and serialises the proto again, so a load costs several times the
weights in memory (which glibc keeps) and repeats ORT's graph optimisation every start. Here the expansion is
streamed to disk once, ORT optimises the graph offline (constant folding, fusions) and saves it with its
weights as external data; the entry is keyed by the content of the files it comes from, the onnxruntime version
and the optimisation settings. Writes go to a scratch folder renamed into place, so an entry is whole or
absent (the scratch folder of a build killed midway is removed at the next start: engine/models/scratch.py); an entry
that fails to load is deleted and rebuilt. When the cache folder cannot be written, the caller falls back to the
in-memory path (one warning).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from engine.models.scratch import remove_abandoned, scratch_folder

logger = logging.getLogger("gsv.model_cache")

#: Bump when what an entry holds changes (layout, manifest, build steps).
FORMAT_VERSION = "1"
#: Offline level: EXTENDED fusions are hardware-independent; the layout transforms of ORT_ENABLE_ALL
#: (which tie a saved graph to the CPU it was made on) run at load time instead.
OFFLINE_LEVEL = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
#: Initializers at least this large go to the external data file (and can be shared between sessions).
EXTERNAL_MIN_BYTES = 1024
MODEL_NAME = "model.onnx"
DATA_NAME = "model.onnx.data"
MANIFEST_NAME = "manifest.json"
_CHUNK = 8 << 20


class CacheUnavailable(OSError):
    """The cache folder cannot hold an entry (read-only, full): load in memory instead."""


@dataclass(frozen=True)
class CachedModel:
    """An optimised graph on disk, its external data file and each external tensor's content hash."""

    folder: Path
    initializers: dict[str, str]  # name -> sha256 of its bytes in the data file

    @property
    def graph(self) -> Path:
        return self.folder / MODEL_NAME

    @property
    def data(self) -> Path:
        return self.folder / DATA_NAME


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _external_locations(graph: Path) -> list[Path]:
    """The files a graph's external initializers name, relative to the graph (a Genie template names none that exist)."""
    model = onnx.load(str(graph), load_external_data=False)
    names = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [graph.parent / name for name in sorted(names)]


def cache_key(graph: Path, fp16_weights: Path | None) -> str:
    """A hash of everything the entry depends on: file contents, onnxruntime version, optimisation settings."""
    sources = [graph, fp16_weights] if fp16_weights is not None else [graph, *_external_locations(graph)]
    digest = hashlib.sha256()
    digest.update(f"format={FORMAT_VERSION} ort={onnxruntime.__version__} level={int(OFFLINE_LEVEL)}".encode())
    digest.update(f" external_min={EXTERNAL_MIN_BYTES} fp16={fp16_weights is not None}".encode())
    for source in sources:
        digest.update(b"\0" + file_digest(source).encode())
    return digest.hexdigest()


class ModelCache:
    """Entries under `root` (CACHE_DIR/models), one folder per key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, graph: Path, fp16_weights: Path | None) -> CachedModel:
        """The entry for this graph and weights, built first if absent or broken; CacheUnavailable if it cannot be written."""
        folder = self.root / cache_key(graph, fp16_weights)[:40]
        entry = _read_entry(folder)
        if entry is not None:
            return entry
        if folder.exists():
            logger.warning("model cache entry %s is incomplete or damaged: rebuilding it", folder.name)
            self.discard(folder)
        return self._build(folder, graph, fp16_weights)

    def discard(self, folder: Path) -> None:
        """Remove a damaged entry (a failed load), so the next `get` rebuilds it."""
        shutil.rmtree(folder, ignore_errors=True)

    def remove_abandoned(self) -> None:
        """Remove the scratch folders of builds killed midway (engine/models/scratch.py); run once at start-up."""
        remove_abandoned(self.root)

    def _build(self, folder: Path, graph: Path, fp16_weights: Path | None) -> CachedModel:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with scratch_folder(self.root, folder.name[:12]) as scratch:
                self._write(scratch, folder, graph, fp16_weights)
        except OSError as error:
            raise CacheUnavailable(f"cannot write to {self.root}: {error}") from error
        logger.info("model cache: wrote %s for %s", folder.name, graph.name)
        entry = _read_entry(folder)
        if entry is None:
            raise CacheUnavailable(f"model cache entry {folder} vanished after it was written")
        return entry

    @staticmethod
    def _write(scratch: Path, folder: Path, graph: Path, fp16_weights: Path | None) -> None:
        """Build the entry in `scratch` and rename it to `folder`."""
        source = _expanded_template(graph, fp16_weights, scratch) if fp16_weights is not None else graph
        level = _save_loadable(source, scratch, graph.name)
        for leftover in scratch.iterdir():
            if leftover.name not in (MODEL_NAME, DATA_NAME):
                leftover.unlink()
        initializers = _initializer_digests(scratch / MODEL_NAME, scratch / DATA_NAME)
        manifest = {
            "source": graph.name,
            "level": level,
            "sizes": {name: (scratch / name).stat().st_size for name in (MODEL_NAME, DATA_NAME)},
            "initializers": initializers,
        }
        (scratch / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
        try:
            os.rename(scratch, folder)
        except OSError:
            if _read_entry(folder) is None:  # not another process finishing the same entry first
                raise


def _read_entry(folder: Path) -> CachedModel | None:
    """The entry if its manifest is readable and its files have the sizes it records; None otherwise."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        sizes = manifest["sizes"]
        for name in (MODEL_NAME, DATA_NAME):
            if (folder / name).stat().st_size != sizes[name]:
                return None
        initializers = {str(name): str(digest) for name, digest in manifest["initializers"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return CachedModel(folder, initializers)


def _expanded_template(graph: Path, fp16_weights: Path, scratch: Path) -> Path:
    """The template with its fp16 weights expanded to an fp32 file beside it (offsets in templates count fp32 bytes)."""
    expanded = scratch / "weights_fp32.bin"
    half = np.memmap(fp16_weights, dtype=np.float16, mode="r")
    step = _CHUNK // 4
    with expanded.open("wb") as out:
        for start in range(0, half.size, step):
            half[start : start + step].astype(np.float32).tofile(out)
    del half
    model = onnx.load(str(graph), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = expanded.name
    template = scratch / "template.onnx"
    onnx.save(model, str(template))
    return template


def _save_loadable(source: Path, scratch: Path, name: str) -> str:
    """Save `source` optimised offline, or as it is (fp32, external data) when onnxruntime cannot load its own save.

    onnxruntime 1.22 saves a graph with `If` subgraphs (the prompt encoder) with some of a subgraph's initializers
    written twice, the same name and the same bytes (a Constant it turned into an initializer), and then refuses
    its own file ("initializer name is not unique"): the repeats are dropped first (`_drop_repeated_initializers`).
    Should a graph still not load, it is stored unoptimised and optimised at every load instead. `name` is the
    voice's own file, for the log.
    """
    _optimise(source, scratch, OFFLINE_LEVEL)
    _drop_repeated_initializers(scratch / MODEL_NAME)
    try:
        check = onnxruntime.SessionOptions()
        check.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        onnxruntime.InferenceSession(str(scratch / MODEL_NAME), check, providers=["CPUExecutionProvider"])
        return OFFLINE_LEVEL.name
    except Exception as error:  # onnxruntime raises its own error types for an invalid graph
        logger.info(
            "model cache: onnxruntime %s cannot load its own optimised save of %s (%s); the cache keeps it unoptimised, "
            "so it is optimised at every load instead (it works the same, each start takes a little longer)",
            onnxruntime.__version__,
            name,
            error,
        )
    for stale in (MODEL_NAME, DATA_NAME):
        (scratch / stale).unlink(missing_ok=True)
    model = onnx.load(str(source), load_external_data=True)
    onnx.save_model(
        model,
        str(scratch / MODEL_NAME),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=DATA_NAME,
        size_threshold=EXTERNAL_MIN_BYTES,
    )
    return onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL.name


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """A graph and every subgraph in it (the branches of `If`, the bodies of `Loop` and `Scan`), at any depth."""
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs):
                found += _graphs(sub)
    return found


def _drop_repeated_initializers(path: Path) -> int:
    """Remove the second and later copies of an initializer that a graph holds twice with the same content; return how
    many. A name held twice with different contents is left as it is (the load check then refuses the graph)."""
    model = onnx.load(str(path), load_external_data=False)
    dropped = 0
    for graph in _graphs(model.graph):
        seen: dict[str, bytes] = {}
        keep = []
        for tensor in graph.initializer:
            content = tensor.SerializeToString(deterministic=True)
            if seen.get(tensor.name) == content:
                dropped += 1
                continue
            seen.setdefault(tensor.name, content)
            keep.append(tensor)
        if len(keep) != len(graph.initializer):
            del graph.initializer[:]
            graph.initializer.extend(keep)
    if dropped:
        onnx.save(model, str(path))  # the graph alone: its external data file stays as onnxruntime wrote it
    return dropped


def _optimise(source: Path, scratch: Path, level: onnxruntime.GraphOptimizationLevel) -> None:
    """Let onnxruntime optimise `source` and save the result (weights as external data) into `scratch`."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = 1
    options.optimized_model_filepath = str(scratch / MODEL_NAME)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", DATA_NAME)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", str(EXTERNAL_MIN_BYTES))
    session = onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    del session
    if not (scratch / DATA_NAME).exists():  # a graph without large weights: keep the layout uniform
        (scratch / DATA_NAME).touch()


def external_tensors(graph: Path) -> dict[str, tuple[int, int, np.dtype, tuple[int, ...]]]:
    """Each external initializer of a saved graph: (offset, length, dtype, shape)."""
    model = onnx.load(str(graph), load_external_data=False)
    tensors = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        tensors[tensor.name] = (int(info.get("offset", 0)), int(info["length"]), dtype, tuple(tensor.dims))
    return tensors


def _initializer_digests(graph: Path, data: Path) -> dict[str, str]:
    digests = {}
    with data.open("rb") as file:
        for name, (offset, length, _, _) in external_tensors(graph).items():
            file.seek(offset)
            digests[name] = hashlib.sha256(file.read(length)).hexdigest()
    return digests
