"""Which T2S decoder graphs a voice loads: Genie's fp32 templates (the default) or our int8 ones (opt-in).

int8 decoders are written offline by `python -m engine.tools.quantize` (or `--int8` of the prepare and demo
commands); a voice without them is not served under T2S_PRECISION=int8 rather than silently run in fp32,
so what a user measured is what they get.
"""

from __future__ import annotations

from pathlib import Path

from engine.models.model_files import T2S_DECODERS, T2S_PRECISIONS, T2S_WEIGHTS


class MissingInt8Decoders(FileNotFoundError):
    """T2S_PRECISION=int8 and the voice has no int8 decoders; the message says how to make them."""


def decoder_files(models: Path, precision: str) -> tuple[Path, Path, Path | None]:
    """(first-stage graph, stage graph, the fp16 weight file they read or None when self-contained)."""
    if precision not in T2S_DECODERS:
        raise ValueError(f"T2S precision must be one of {', '.join(T2S_PRECISIONS)}, not {precision!r}")
    first, stage = (models / name for name in T2S_DECODERS[precision])
    if precision == "fp32":
        return first, stage, models / T2S_WEIGHTS
    missing = [path.name for path in (first, stage) if not path.is_file()]
    if missing:
        raise MissingInt8Decoders(
            f"T2S_PRECISION=int8 but {models} has no {' or '.join(missing)}: "
            f"write them with `python -m engine.tools.quantize {models.parent}` (a minute, about 2.5 GB of memory), "
            "or set T2S_PRECISION=fp32"
        )
    return first, stage, None
