"""A noise-free copy of a voice's vocoder, for tests only (engine/tools/deterministic.py pins the VITS noise to
zero), so two runs on the same input give the same audio and chunked vocoding can be compared with the
whole-segment vocoder sample by sample."""

from __future__ import annotations

from pathlib import Path

import onnxruntime


def load_deterministic_vocoder(models: Path, scratch: Path, threads: int = 2) -> onnxruntime.InferenceSession:
    from engine.models.sessions import in_memory_session  # noqa: PLC0415
    from engine.tools.deterministic import VOCODER_FILE, pin_file  # noqa: PLC0415

    pinned = scratch / VOCODER_FILE
    assert pin_file(models / VOCODER_FILE, pinned, 0.0) == 1, "expected the one VITS noise node"
    return in_memory_session(pinned, models / "vits_fp16.bin", threads)
