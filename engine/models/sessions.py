"""ONNX sessions as the server loads them: from the model cache when it can, in memory as Genie does when not.

Every graph goes through `SessionLoader.session(graph, fp16_weights)`, one function per graph path, so a
variant of a graph (another precision, say) is one argument away. Sessions given the same `WeightPool` share
one copy of every weight tensor whose content is equal (the two T2S decoders: about 300 MB each otherwise).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime

from engine import genie
from engine.models.model_cache import CachedModel, CacheUnavailable, ModelCache, external_tensors

logger = logging.getLogger("gsv.sessions")

PROVIDERS = ["CPUExecutionProvider"]
#: Smaller tensors are not worth an entry in the pool (biases, norms, constants of shape arithmetic).
SHARE_MIN_BYTES = 64 * 1024


def session_options(threads: int) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Several workers share the cores: spinning threads would steal them from each other.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class WeightPool:
    """Weight tensors handed to several sessions as one copy, read-only from the cache entries' data files.

    The pool must outlive the sessions it fed (onnxruntime uses the memory in place). Sessions fed from a pool do
    not prepack their MatMul weights: a prepacked copy is per session, and would undo the sharing.
    """

    def __init__(self) -> None:
        self._values: dict[str, onnxruntime.OrtValue] = {}
        self._buffers: list[np.ndarray] = []

    def attach(self, entry: CachedModel, options: onnxruntime.SessionOptions) -> None:
        data = np.memmap(entry.data, dtype=np.uint8, mode="r") if entry.data.stat().st_size else None
        for name, (offset, length, dtype, shape) in external_tensors(entry.graph).items():
            digest = entry.initializers.get(name)
            if data is None or digest is None or length < SHARE_MIN_BYTES or dtype.kind != "f":
                continue
            if digest not in self._values:
                array = data[offset : offset + length].view(dtype).reshape(shape)
                self._buffers.append(array)
                self._values[digest] = onnxruntime.OrtValue.ortvalue_from_numpy(array)
            options.add_initializer(name, self._values[digest])
        options.add_session_config_entry("session.disable_prepacking", "1")

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self._buffers)


class SessionLoader:
    """Loads graphs with `threads` intra-op threads, through `cache` (None: always in memory)."""

    def __init__(self, threads: int, cache: ModelCache | None) -> None:
        self.threads = threads
        self.cache = cache

    def session(self, graph: Path, fp16_weights: Path | None, pool: WeightPool | None = None) -> onnxruntime.InferenceSession:
        """`graph` with its weights (an fp16 file for Genie's templates, else the graph's own external data)."""
        if fp16_weights is not None and not fp16_weights.exists():
            fp16_weights = None
        if self.cache is not None:
            try:
                return self._cached(graph, fp16_weights, pool)
            except CacheUnavailable as error:
                logger.warning("model cache off: %s; loading models in memory (slower starts, more memory)", error)
                self.cache = None
        return in_memory_session(graph, fp16_weights, self.threads)

    def _cached(self, graph: Path, fp16_weights: Path | None, pool: WeightPool | None) -> onnxruntime.InferenceSession:
        assert self.cache is not None
        entry = self.cache.get(graph, fp16_weights)
        try:
            return self._open(entry, pool)
        except Exception as error:  # onnxruntime and protobuf raise many types for a damaged file; rebuilt once
            logger.warning("model cache entry %s for %s does not load (%s): rebuilding it", entry.folder.name, graph.name, error)
            self.cache.discard(entry.folder)
            entry = self.cache.get(graph, fp16_weights)
        try:
            return self._open(entry, pool)
        except Exception as error:  # rebuilt and still unloadable: serve from memory rather than not at all
            logger.warning("model cache entry for %s does not load (%s): loading it in memory", graph.name, error)
            return in_memory_session(graph, fp16_weights, self.threads)

    def _open(self, entry: CachedModel, pool: WeightPool | None) -> onnxruntime.InferenceSession:
        options = session_options(self.threads)
        if pool is not None:
            pool.attach(entry, options)
        return onnxruntime.InferenceSession(str(entry.graph), options, providers=PROVIDERS)


def in_memory_session(graph: Path, fp16_weights: Path | None, threads: int) -> onnxruntime.InferenceSession:
    """Genie's way: the fp16 weight file expanded to fp32 in Python and the graph serialised with it."""
    if fp16_weights is not None and fp16_weights.exists():
        return genie.load_fp16_session(graph, fp16_weights, PROVIDERS, session_options(threads))
    return onnxruntime.InferenceSession(str(graph), session_options(threads), providers=PROVIDERS)
