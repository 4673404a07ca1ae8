"""`python -m engine.tools.prepare`: generated GPT-SoVITS checkpoints converted for real, then loaded and
synthesised with the server's own code; and every input it must refuse, with nothing left behind.

Conversions run the command in a subprocess with the stand-in GenieData of the demo voice, and the
result is loaded and synthesised here. Refusals call `main` in this process, except the one that needs
an interpreter without torch. Generated files stay in pytest's tmp dirs; the large ones are deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.tools import checkpoints, prepare
from engine.voices.voice_folder import BASE_FILES
from tests.fake_checkpoints import random_weights, write_gpt_checkpoint, write_sovits_checkpoint
from tests.server_process import ROOT

pytestmark = pytest.mark.e2e

TEXT = "こんにちは、今日はいい天気ですね。"
#: Two phonemes, so the token cap (the random GPT never emits EOS) is the 50-token floor.
SPOKEN = "あ"


@dataclass(frozen=True)
class Inputs:
    ckpt: Path
    v2_pth: Path
    v2proplus_pth_small: Path  # V2ProPlus weights in one shared storage: under genie-tts's 150 MB line
    reference: Path  # 5 s stereo FLAC at 44.1 kHz


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inputs]:
    folder = tmp_path_factory.mktemp("inputs")
    write_gpt_checkpoint(folder / "voice.ckpt")
    write_sovits_checkpoint(folder / "voice.pth", "V2")
    write_sovits_checkpoint(folder / "small-plus.pth", "V2ProPlus", version_header=b"06", hparams_config=True)
    reference = folder / "reference.flac"
    sf.write(reference, np.stack([tone(5.0, 44100), 0.5 * tone(5.0, 44100)], axis=1), 44100)
    yield Inputs(folder / "voice.ckpt", folder / "voice.pth", folder / "small-plus.pth", reference)
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def v2proplus_pth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A full-size V2ProPlus .pth (about 165 MB) as GPT-SoVITS exports it: version marker, HParams config."""
    path = tmp_path_factory.mktemp("large") / "voice-plus.pth"
    write_sovits_checkpoint(path, "V2ProPlus", shared=False, version_header=b"06", hparams_config=True)
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def shared_models(demo_root: Path):
    from engine.genie import import_genie
    from engine.voices.voice import SharedModels

    import_genie(demo_root / "GenieData")
    return SharedModels.load(demo_root / "GenieData", threads=2)


@pytest.fixture
def models(tmp_path: Path) -> Iterator[Path]:
    """A models folder for real conversions, removed afterwards: each voice is 250-330 MB."""
    yield tmp_path / "models"
    shutil.rmtree(tmp_path / "models", ignore_errors=True)


@pytest.fixture
def genie_env(shared_models, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For `main` in this process past the GenieData step: Genie is imported (by `shared_models`) with this folder."""
    monkeypatch.setenv("GENIE_DATA_DIR", str(demo_root / "GenieData"))
    monkeypatch.setenv("GENIE_DOWNLOAD", "0")


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GenieData and no download: a refusal test that got past its check fails on that instead."""
    monkeypatch.setenv("GENIE_DATA_DIR", str(tmp_path / "no-genie-data"))
    monkeypatch.setenv("GENIE_DOWNLOAD", "0")


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def arguments(inputs: Inputs, models: Path, **overrides: object) -> list[str]:
    values = {
        "ckpt": inputs.ckpt,
        "pth": inputs.v2_pth,
        "reference": inputs.reference,
        "text": TEXT,
        "language": "ja",
        "name": "voice",
        "models": models,
        **overrides,
    }
    return [item for key, value in values.items() for item in (f"--{key}", str(value))]


def run_command(argv: list[str], genie_data: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENIE_DATA_DIR": str(genie_data), "GENIE_DOWNLOAD": "0"}
    return subprocess.run(
        [sys.executable, "-m", "engine.tools.prepare", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command in this process; it must fail. Returns its error message."""
    assert prepare.main(argv) == 1
    return capsys.readouterr().err


def speak(voice_dir: Path, genie_data: Path, shared_models):
    from engine.text.g2p import text_to_phonemes
    from engine.voices.voice import load_voice
    from engine.voices.voice_folder import inspect_voice
    from tests.engine_helpers import synthesize

    voice = load_voice(inspect_voice(voice_dir, genie_data), shared_models, threads=2)
    return synthesize(voice, text_to_phonemes(SPOKEN, voice.language), threading.Event())


def assert_speaks(result) -> None:
    assert result.tokens == 50 and result.capped
    assert result.audio.dtype == np.float32 and result.audio.size > 0
    assert np.all(np.isfinite(result.audio)) and np.any(result.audio)


# ---- real conversions ---------------------------------------------------------------------------------


def test_v2_pair_becomes_a_voice_that_loads_and_speaks(
    inputs: Inputs, demo_root: Path, shared_models, models: Path, tmp_path: Path
) -> None:
    (models / "voice").mkdir(parents=True)
    (models / "voice" / "old-file").write_text("replaced by --force")
    work = tmp_path / "work"
    (work / "Cache").mkdir(parents=True)
    (work / "Cache" / "mine.txt").write_text("genie-tts deletes ./Cache after converting; ours must survive")

    result = run_command([*arguments(inputs, models), "--force"], demo_root / "GenieData", cwd=work)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "OK   voice: V2, Japanese, reference 5.0 s"
    assert (work / "Cache" / "mine.txt").is_file()
    assert sorted(path.name for path in models.iterdir()) == ["voice"]  # no scratch or replaced folder left
    voice_dir = models / "voice"
    assert not (voice_dir / "old-file").exists()
    assert not (voice_dir / "tts_models" / "prompt_encoder_fp16.bin").exists()
    info = sf.info(str(voice_dir / "reference" / "audio.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (32000, 1, "PCM_16", 5 * 32000)
    config = json.loads((voice_dir / "reference" / "config.json").read_text(encoding="utf-8"))
    assert config == {"text": TEXT, "language": "ja"}
    check = subprocess.run(
        [sys.executable, "server.py", "--check", "--models", str(models)],
        cwd=ROOT,
        env={**os.environ, "GENIE_DATA_DIR": str(demo_root / "GenieData")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and check.stdout.splitlines()[-1] == result.stdout.splitlines()[-1]
    assert_speaks(speak(voice_dir, demo_root / "GenieData", shared_models))


def test_v2proplus_export_becomes_a_voice_that_loads_and_speaks(
    inputs: Inputs, v2proplus_pth: Path, demo_root: Path, shared_models, models: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "long.wav"
    sf.write(reference, tone(12.0, 48000), 48000, subtype="FLOAT")

    argv = arguments(inputs, models, pth=v2proplus_pth, reference=reference, language="Japanese", name="plus")
    result = run_command(argv, demo_root / "GenieData")

    assert result.returncode == 0, result.stderr
    assert "WARN reference audio is 12.0 s" in result.stdout  # said before converting, with what to do
    assert result.stdout.splitlines()[-1] == (
        "WARN plus: V2ProPlus, Japanese, reference 12.0 s; reference audio is 12.0 s; GPT-SoVITS works best with 3-10 s"
    )
    assert (models / "plus" / "tts_models" / "prompt_encoder_fp16.bin").is_file()
    assert sf.info(str(models / "plus" / "reference" / "audio.wav")).frames == 12 * 32000
    assert_speaks(speak(models / "plus", demo_root / "GenieData", shared_models))


def test_int8_flag_adds_int8_decoders_that_load_and_speak(inputs: Inputs, demo_root: Path, shared_models, models: Path) -> None:
    from engine.text.g2p import text_to_phonemes
    from engine.tools.quantize import int8_paths
    from engine.voices.voice import load_voice
    from engine.voices.voice_folder import inspect_voice
    from tests.engine_helpers import synthesize

    result = run_command([*arguments(inputs, models), "--int8"], demo_root / "GenieData")

    assert result.returncode == 0, result.stderr
    assert "t2s_stage_decoder_int8.onnx: 97 MatMuls in int8" in result.stdout
    assert all(path.is_file() for path in int8_paths(models / "voice" / "tts_models"))
    voice = load_voice(inspect_voice(models / "voice", demo_root / "GenieData"), shared_models, 2, t2s_precision="int8")
    assert str(voice.stage_decoder._model_path).endswith("t2s_stage_decoder_int8.onnx")  # loaded from the int8 file
    assert_speaks(synthesize(voice, text_to_phonemes(SPOKEN, voice.language), threading.Event()))


def test_a_failure_after_converting_leaves_the_old_voice_and_no_scratch(
    inputs: Inputs, genie_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Interrupted right after genie-tts wrote its files (here in this process, Genie already imported)."""
    models = tmp_path / "models"
    (models / "voice").mkdir(parents=True)
    (models / "voice" / "keep").write_text("the voice being replaced")
    real_convert = prepare.convert
    written: list[str] = []

    def convert_then_interrupt(sources: prepare.VoiceSources, output: Path, kind: str, scratch: Path) -> None:
        real_convert(sources, output, kind, scratch)
        written.extend(sorted(path.name for path in output.iterdir()))
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "convert", convert_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare.main([*arguments(inputs, models), "--force"])

    assert set(BASE_FILES) <= set(written)
    assert sorted(path.name for path in models.iterdir()) == ["voice"]
    assert sorted(path.name for path in (models / "voice").iterdir()) == ["keep"]


# ---- refusals -----------------------------------------------------------------------------------------


def test_swapped_checkpoints_are_named_as_such(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    swapped = refused(arguments(inputs, models, ckpt=inputs.v2_pth, pth=inputs.ckpt), capsys)
    assert f"--ckpt {inputs.v2_pth} holds SoVITS weights" in swapped and "swapped" in swapped
    gpt_as_pth = refused(arguments(inputs, models, pth=inputs.ckpt), capsys)
    assert f"--pth {inputs.ckpt} holds GPT weights" in gpt_as_pth and "swapped" in gpt_as_pth
    marked = refused(arguments(inputs, models, ckpt=inputs.v2proplus_pth_small), capsys)
    assert "is a GPT-SoVITS v2ProPlus SoVITS model (a .pth); are --ckpt and --pth swapped?" in marked
    assert not models.exists()


def test_files_that_are_not_checkpoints(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    assert "is not a PyTorch checkpoint" in refused(arguments(inputs, models, ckpt=inputs.reference), capsys)
    archive = tmp_path / "notes.pth"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("notes.txt", "a zip archive, but not one torch wrote")
    assert f"--pth {archive} is not a readable PyTorch checkpoint" in refused(arguments(inputs, models, pth=archive), capsys)
    assert "does not exist" in refused(arguments(inputs, models, pth=tmp_path / "absent.pth"), capsys)
    training = tmp_path / "epoch=15-step=96.ckpt"
    torch.save({"state_dict": {"model.ar_predict_layer.weight": torch.zeros(2, 2)}, "epoch": 15}, training)
    assert "is a training checkpoint" in refused(arguments(inputs, models, ckpt=training), capsys)
    assert not models.exists()


def test_v2_and_v2proplus_against_genies_size_rule(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    small_plus = refused(arguments(inputs, models, pth=inputs.v2proplus_pth_small), capsys)
    assert "holds V2ProPlus weights but is" in small_plus and "would convert it as V2" in small_plus

    big_v2 = tmp_path / "v2-fp32.pth"  # V2 saved in fp32 instead of GPT-SoVITS's fp16: about 170 MB
    write_sovits_checkpoint(big_v2, "V2", shared=False, dtype=torch.float32)
    try:
        message = refused(arguments(inputs, models, pth=big_v2), capsys)
    finally:
        big_v2.unlink()
    assert "holds V2 weights but is" in message and "would convert it as V2ProPlus" in message and ".half()" in message
    assert not models.exists()


def test_a_model_genie_cannot_convert_is_refused_with_its_differences(
    inputs: Inputs, offline_env: None, tmp_path: Path, capsys
) -> None:
    """A GPT-SoVITS v2Pro .pth: V2-sized decoder, but 1024-wide speaker conditioning."""
    _, shapes = checkpoints.expected_weights("V2")
    v2pro_shapes = {**shapes, "ref_enc.fc.fc.weight": (1024, 128), "ref_enc.fc.fc.bias": (1024,)}
    v2pro = tmp_path / "v2pro.pth"
    torch.save({"weight": random_weights(v2pro_shapes, seed=3, shared=True), "config": {}, "info": ""}, v2pro)
    v2pro.write_bytes(b"05" + v2pro.read_bytes()[2:])
    message = refused(arguments(inputs, tmp_path / "models", pth=v2pro), capsys)
    assert "is neither a V2 nor a V2ProPlus SoVITS model" in message and "marks it as GPT-SoVITS v2Pro" in message
    assert "Closest is V2: 2 of the" in message and "ref_enc.fc.fc.weight is [1024, 128], expected [512, 128]" in message

    gpt_shapes, _ = checkpoints.expected_weights("V2")
    truncated = tmp_path / "truncated.ckpt"
    weights = random_weights(gpt_shapes, seed=4, shared=True)
    del weights["model.h.layers.23.norm2.bias"]
    torch.save({"weight": weights, "config": {}, "info": ""}, truncated)
    message = refused(arguments(inputs, tmp_path / "models", ckpt=truncated), capsys)
    assert "is not a GPT-SoVITS v2 GPT model" in message and "model.h.layers.23.norm2.bias is missing" in message


class _RunsCode:
    """Unpickling this calls os.mkdir: stands for any payload a malicious checkpoint could carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_carrying_code_is_not_unpickled(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    _, shapes = checkpoints.expected_weights("V2")
    carrier = tmp_path / "carrier.pth"
    torch.save({"weight": random_weights(shapes, seed=5, shared=True), "config": _RunsCode(marker)}, carrier)
    message = refused(arguments(inputs, tmp_path / "models", pth=carrier), capsys)
    assert "refusing to unpickle it" in message and "mkdir" in message
    assert not marker.exists()


def test_missing_torch_names_the_install_command(inputs: Inputs, tmp_path: Path) -> None:
    """A fresh interpreter in which `import torch` fails as it does when torch is not installed."""
    blocked = "import sys; sys.modules['torch'] = None; from engine.tools.prepare import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENIE_DATA_DIR": str(tmp_path / "none"), "GENIE_DOWNLOAD": "0"}
    result = subprocess.run(
        [sys.executable, "-c", blocked, *arguments(inputs, tmp_path / "models")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "needs torch, which is not installed. Run: pip install -r requirements-convert.txt" in result.stderr
    assert not (tmp_path / "models").exists()


def test_an_existing_voice_needs_force(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    (models / "voice").mkdir(parents=True)
    (models / "voice" / "keep").write_text("someone's voice")
    assert "already exists; pass --force to replace it" in refused(arguments(inputs, models), capsys)
    assert (models / "voice" / "keep").read_text() == "someone's voice"


def test_unusable_reference_audio(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    text_file = tmp_path / "clip.wav"
    text_file.write_text("not audio")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 32000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000 * 4, dtype=np.float32), 32000)
    assert "is not audio soundfile can read" in refused(arguments(inputs, models, reference=text_file), capsys)
    assert "holds no audio" in refused(arguments(inputs, models, reference=empty), capsys)
    assert "is silent" in refused(arguments(inputs, models, reference=silent), capsys)
    assert "does not exist" in refused(arguments(inputs, models, reference=tmp_path / "absent.wav"), capsys)
    assert not models.exists()


def test_language_text_and_name_are_checked(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    assert "--language 'fr' is not one of chinese, en, english, ja, japanese, jp, ko, korean, zh" in refused(
        arguments(inputs, models, language="fr"), capsys
    )
    assert "--text must be the transcript" in refused(arguments(inputs, models, text="  "), capsys)
    assert "must be a plain folder name" in refused(arguments(inputs, models, name="../elsewhere"), capsys)
    assert "must be a plain folder name" in refused(arguments(inputs, models, name=".hidden"), capsys)
    assert not models.exists() and not (tmp_path / "elsewhere").exists()


def test_transcripts_genie_cannot_read(inputs: Inputs, genie_env: None, demo_root: Path, tmp_path: Path, capsys) -> None:
    """Found before converting: G2P data the language needs, and text with nothing to pronounce."""
    models = tmp_path / "models"
    partial = tmp_path / "GenieData"  # a copy without G2P/ (the demo's stand-in has the Chinese and English data)
    with pytest.raises(prepare.PrepareError, match="part of the full GenieData") as caught:
        prepare.check_reference_text("Hello there.", "en", partial)
    assert f"English needs {partial / 'G2P/EnglishG2P'}" in str(caught.value)
    assert "has nothing pronounceable in Japanese" in refused(arguments(inputs, models, text="!!! ..."), capsys)
    assert not models.exists()


def test_missing_genie_data_is_reported_after_the_inputs_pass(inputs: Inputs, offline_env: None, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    message = refused(arguments(inputs, models), capsys)
    assert "GenieData is missing at" in message and "GENIE_DOWNLOAD=0" in message
    assert not models.exists()


def test_reference_is_mono_32k_and_length_warnings(tmp_path: Path) -> None:
    source = tmp_path / "short.ogg"
    sf.write(source, np.stack([tone(2.0, 22050)] * 2, axis=1), 22050, format="OGG")
    clip = prepare.read_reference(source)
    assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert abs(clip.seconds - 2.0) < 0.01 and (clip.source_rate, clip.source_channels) == (22050, 2)
    assert len(clip.warnings) == 1 and clip.warnings[0].startswith("reference audio is 2.0 s; GPT-SoVITS works best with 3-10 s")
