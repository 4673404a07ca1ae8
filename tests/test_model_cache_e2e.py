"""The caches on the demo voice: one copy of the T2S weights, the same numbers as Genie's loader, a warm start
that loads no start-up-only model."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.server_process import ROOT

pytestmark = pytest.mark.e2e

#: Loads the first decoder through a pool and runs it (touching every weight page), then the stage decoder
#: through the same pool (or, with "unshared", without it) and runs it; prints VmRSS after each, in MB.
RSS_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from engine.models.model_cache import ModelCache
from engine.models.sessions import SessionLoader, WeightPool

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

models, cache, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
loader = SessionLoader(1, ModelCache(cache))
weights = models / "t2s_shared_fp16.bin"
pool = WeightPool()
first = loader.session(models / "t2s_first_stage_decoder_fp32.onnx", weights, pool)
x = np.zeros((1, 40, 512), np.float32)
prompts = np.zeros((1, 20), np.int64)
y, y_emb, *kv = first.run(None, {"x": x, "prompts": prompts})
after_first = rss()
stage = loader.session(models / "t2s_stage_decoder_fp32.onnx", weights, pool if mode == "shared" else None)
names = [item.name for item in stage.get_inputs()]
stage.run(None, dict(zip(names, [y, y_emb, *kv])))
print(json.dumps({"after_first": after_first, "after_stage": rss(), "pool_mb": pool.nbytes / 2**20}))
"""


def decoder_rss(demo_root: Path, cache: Path, mode: str) -> dict[str, float]:
    models = demo_root / "demo" / "tts_models"
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(models), str(cache), mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_two_decoders_hold_one_copy_of_the_t2s_weights(demo_root: Path, tmp_path: Path) -> None:
    """The stage decoder, loaded after the first-stage decoder on the same pool, adds far less than the weights
    (about 300 MB in fp32); loaded on its own it adds about their size (the check that the measure can fail)."""
    cache = tmp_path / "models"
    decoder_rss(demo_root, cache, "shared")  # fills the cache: optimising a graph leaves a heap of its own behind
    shared = decoder_rss(demo_root, cache, "shared")
    assert shared["pool_mb"] > 250  # the T2S weights went through the pool
    assert shared["after_stage"] - shared["after_first"] < 0.25 * shared["pool_mb"]
    unshared = decoder_rss(demo_root, cache, "unshared")
    assert unshared["after_stage"] - unshared["after_first"] > 0.75 * shared["pool_mb"]


def test_cached_sessions_compute_what_genies_loader_gives(demo_root: Path, tmp_path: Path) -> None:
    from engine.genie import import_genie
    from engine.models.model_cache import ModelCache
    from engine.models.sessions import SessionLoader, WeightPool, in_memory_session

    import_genie(demo_root / "GenieData")
    models = demo_root / "demo" / "tts_models"
    weights = models / "t2s_shared_fp16.bin"
    loader = SessionLoader(2, ModelCache(tmp_path / "models"))
    pool = WeightPool()
    decoders = ("t2s_first_stage_decoder_fp32.onnx", "t2s_stage_decoder_fp32.onnx")
    cached = [loader.session(models / name, weights, pool) for name in decoders]
    genie = [in_memory_session(models / name, weights, 2) for name in decoders]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 37, 512)).astype(np.float32)
    prompts = rng.integers(0, 1024, (1, 25)).astype(np.int64)
    # Only the KV caches are deterministic (the next token comes from a random node), so both stage decoders
    # are fed the same first step.
    ours = cached[0].run(None, {"x": x, "prompts": prompts})
    theirs = genie[0].run(None, {"x": x, "prompts": prompts})
    for mine, reference in zip(ours[2:], theirs[2:], strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-4)
    names = [item.name for item in genie[1].get_inputs()]
    feed = dict(zip(names, theirs, strict=True))
    for mine, reference in zip(cached[1].run(None, feed)[3:], genie[1].run(None, feed)[3:], strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-4)

    vocoder = loader.session(models / "vits_fp32.onnx", models / "vits_fp16.bin")
    genie_vocoder = in_memory_session(models / "vits_fp32.onnx", models / "vits_fp16.bin", 2)
    feed = {
        "text_seq": rng.integers(1, 300, (1, 20)).astype(np.int64),
        "pred_semantic": rng.integers(0, 1024, (1, 1, 40)).astype(np.int64),
        "ge": rng.standard_normal((1, 1024, 1)).astype(np.float32),
        "ge_advanced": rng.standard_normal((1, 512, 1)).astype(np.float32),
    }
    np.testing.assert_allclose(vocoder.run(None, feed)[0], genie_vocoder.run(None, feed)[0], rtol=1e-4, atol=1e-5)


def test_a_warm_start_loads_no_start_up_model_and_still_speaks(
    demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.genie import import_genie
    from engine.text.g2p import text_to_phonemes
    from engine.voices.registry import load_voices
    from engine.voices.voice_folder import inspect_voice
    from tests.engine_helpers import synthesize

    import_genie(demo_root / "GenieData")
    folders = [("demo", inspect_voice(demo_root / "demo"))]
    with caplog.at_level(logging.INFO):
        cold = load_voices(folders, demo_root / "GenieData", 2, cache_dir=tmp_path)
    assert "loading HuBERT and the speaker encoder" in caplog.text
    assert "loading its prompt encoder" in caplog.text
    assert "references=computed" in caplog.text
    assert "optimised save" not in caplog.text and "does not load" not in caplog.text  # every graph cached optimised
    levels = {json.loads(manifest.read_text())["level"] for manifest in (tmp_path / "models").glob("*/manifest.json")}
    assert levels == {"ORT_ENABLE_EXTENDED"}
    cold_reference = cold.get("demo").reference
    del cold
    caplog.clear()
    with caplog.at_level(logging.INFO):
        warm = load_voices(folders, demo_root / "GenieData", 2, cache_dir=tmp_path)
    assert "loading HuBERT" not in caplog.text
    assert "prompt encoder" not in caplog.text
    assert "model cache: wrote" not in caplog.text
    assert "references=cached" in caplog.text
    voice = warm.get("demo")
    for name in ("phonemes", "bert", "ssl", "audio_32k", "ge", "ge_advanced"):
        np.testing.assert_array_equal(getattr(voice.reference, name), getattr(cold_reference, name))
    assert set(voice.styles) == {"calm"}
    result = synthesize(voice, text_to_phonemes("こんにちは。", "ja"), threading.Event())
    assert result.tokens > 0 and result.audio.size == result.tokens * 1280
