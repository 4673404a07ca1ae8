"""GPT-SoVITS checkpoint files with random weights, laid out as GPT-SoVITS saves them.

Every tensor genie-tts's converter reads is present with its exact name and shape (taken from the
converter's key lists and ONNX templates via `engine.tools.prepare.expected_weights`; a wrong derivation
there would make the converted voice fail to load, which the tests check).

Small files: with `shared=True` every tensor is a view into one random buffer, and torch saves a
shared storage once, so a pair is a few MB instead of about 240 MB. That cannot work for a V2ProPlus
.pth that genie-tts must treat as one: it decides by file size (over 150 MB), so those get their own
storage per tensor, as a real export has.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import torch

from engine.tools.checkpoints import expected_weights

EOS_TOKEN = 1024
WEIGHT_SCALE = 0.02


class HParams:
    """GPT-SoVITS's `utils.HParams`: older versions pickle a .pth's config as this class."""

    def __init__(self, **values: object) -> None:
        for key, value in values.items():
            setattr(self, key, HParams(**value) if isinstance(value, dict) else value)


@contextmanager
def _pickled_as_gpt_sovits_utils() -> Iterator[None]:
    """Make pickle record HParams as `utils.HParams`, the name GPT-SoVITS's own files carry."""
    module = types.ModuleType("utils")
    module.HParams = HParams
    saved_module, saved_name = sys.modules.get("utils"), HParams.__module__
    sys.modules["utils"], HParams.__module__ = module, "utils"
    try:
        yield
    finally:
        HParams.__module__ = saved_name
        if saved_module is None:
            del sys.modules["utils"]
        else:
            sys.modules["utils"] = saved_module


def random_weights(
    shapes: dict[str, tuple[int, ...]], seed: int, shared: bool, dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def noise(count: int) -> torch.Tensor:
        return (torch.randn(count, generator=generator) * WEIGHT_SCALE).to(dtype)

    if not shared:
        return {name: noise(_numel(shape)).reshape(shape) for name, shape in shapes.items()}
    buffer = noise(max(_numel(shape) for shape in shapes.values()))
    return {name: buffer[: _numel(shape)].view(shape) for name, shape in shapes.items()}


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def write_gpt_checkpoint(path: Path, seed: int = 0, shared: bool = True) -> None:
    """A GPT (.ckpt) as GPT-SoVITS exports it: {"weight", "config", "info"}, fp16 weights.

    Its EOS logit row is zeroed (in its own storage), as in the demo voice, so random weights
    never stop decoding at once and synthesis always yields audio.
    """
    gpt_shapes, _ = expected_weights("V2")
    weights = random_weights(gpt_shapes, seed, shared)
    predict = weights["model.ar_predict_layer.weight"].clone()
    predict[EOS_TOKEN] = 0
    weights["model.ar_predict_layer.weight"] = predict
    config = {"model": {"vocab_size": 1025, "phoneme_vocab_size": 732, "embedding_dim": 512, "n_layer": 24, "EOS": EOS_TOKEN}}
    torch.save({"weight": weights, "config": config, "info": "GPT-e15"}, path)


def write_sovits_checkpoint(
    path: Path,
    kind: str,
    seed: int = 1,
    shared: bool = True,
    dtype: torch.dtype = torch.float16,
    version_header: bytes | None = None,
    hparams_config: bool = False,
) -> None:
    """A SoVITS (.pth) of `kind`, optionally with GPT-SoVITS's 2-byte version marker over "PK".

    `hparams_config` pickles the config as `utils.HParams` (older GPT-SoVITS), else as a dict (newer).
    """
    _, sovits_shapes = expected_weights(kind)
    weights = random_weights(sovits_shapes, seed, shared, dtype)
    wide = kind == "V2ProPlus"
    config = {
        "model": {"gin_channels": 1024 if wide else 512, "upsample_initial_channel": 768 if wide else 512},
        "data": {"sampling_rate": 32000},
        "version": "v2ProPlus" if wide else "v2",
    }
    checkpoint = {"weight": weights, "config": HParams(**config) if hparams_config else config, "info": "8epoch_96iteration"}
    buffer = BytesIO()
    with _pickled_as_gpt_sovits_utils():
        torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    if version_header is not None:
        data = version_header + data[2:]
    path.write_bytes(data)
