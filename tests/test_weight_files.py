"""Model files that are there but hold no model: a Git LFS pointer (a clone without `git lfs`) or a
truncated weight file. `--check` and the loader refuse the voice and say what to do, before onnxruntime
ever sees it (Genie's own loader only warns once per tensor it cannot find)."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from engine.voices.startup import find_voices
from engine.voices.voice_folder import VoiceError, inspect_voice
from tests.helpers import CACHE
from tests.test_cli import run_check
from tests.test_voice_folder import make_voice

POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"4d7a" * 16 + b"\nsize 124345856\n"
LFS_ADVICE = "is a Git LFS pointer, not the file: run `git lfs pull` in the repository (or download the real file)"


def linked_copy(demo_root: Path, models: Path, name: str) -> Path:
    """A copy of the demo voice whose model files are links to the originals, so replacing one is cheap."""
    voice = models / name
    shutil.copytree(demo_root / "demo" / "reference", voice / "reference")
    (voice / "tts_models").mkdir()
    for file in (demo_root / "demo" / "tts_models").iterdir():
        (voice / "tts_models" / file.name).symlink_to(file)
    return voice


def replace(path: Path, content: bytes) -> None:
    path.unlink()
    path.write_bytes(content)


def shorten(path: Path, missing: int) -> int:
    """Replace `path` by a file `missing` bytes shorter (sparse: only its size matters); return the full size."""
    size = path.stat().st_size
    path.unlink()
    with path.open("wb") as file:
        file.truncate(size - missing)
    return size


# ---- with the demo voice (its weight files are exactly as long as its graphs need) -----------------------


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["vits_fp16.bin", "vits_fp32.onnx", "t2s_shared_fp16.bin", "prompt_encoder_fp32.onnx"])
def test_an_lfs_pointer_is_refused_by_name(demo_root: Path, tmp_path: Path, name: str) -> None:
    voice = linked_copy(demo_root, tmp_path, "alice")
    replace(voice / "tts_models" / name, POINTER)
    with pytest.raises(VoiceError) as refused:
        inspect_voice(voice, demo_root / "GenieData")
    assert str(refused.value) == f"{voice / 'tts_models' / name} {LFS_ADVICE}"


@pytest.mark.e2e
def test_an_lfs_pointer_in_place_of_the_reference_audio_is_refused(demo_root: Path, tmp_path: Path) -> None:
    voice = linked_copy(demo_root, tmp_path, "alice")
    replace(voice / "reference" / "audio.wav", POINTER)
    with pytest.raises(VoiceError, match="audio.wav is a Git LFS pointer"):
        inspect_voice(voice, demo_root / "GenieData")


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("name", "graph", "missing"),
    [
        # fp16, read by two graphs through Genie's loader: offsets in the graphs count fp32 bytes
        ("t2s_shared_fp16.bin", "t2s_first_stage_decoder_fp32.onnx", 2),
        ("vits_fp16.bin", "vits_fp32.onnx", 1),
        ("prompt_encoder_fp16.bin", "prompt_encoder_fp32.onnx", 4096),
        # fp32, named by its graph and read by onnxruntime itself
        ("t2s_encoder_fp32.bin", "t2s_encoder_fp32.onnx", 4),
    ],
)
def test_a_truncated_weight_file_is_refused_with_its_sizes(
    demo_root: Path, tmp_path: Path, name: str, graph: str, missing: int
) -> None:
    voice = linked_copy(demo_root, tmp_path, "alice")
    full = shorten(voice / "tts_models" / name, missing)
    with pytest.raises(VoiceError) as refused:
        inspect_voice(voice, demo_root / "GenieData")
    assert f"{voice / 'tts_models' / name} is truncated: {full - missing} bytes, the graph {graph} needs at least {full}" in str(
        refused.value
    )


@pytest.mark.e2e
def test_the_intact_demo_voice_passes(demo_root: Path, tmp_path: Path) -> None:
    folder = inspect_voice(linked_copy(demo_root, tmp_path, "alice"), demo_root / "GenieData")
    assert (folder.kind, folder.warnings) == ("V2ProPlus", [])


@pytest.mark.e2e
def test_check_and_the_loader_refuse_pointers_and_truncated_files(demo_root: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    linked_copy(demo_root, models, "alice")
    replace(linked_copy(demo_root, models, "lfs-bin") / "tts_models" / "vits_fp16.bin", POINTER)
    replace(linked_copy(demo_root, models, "lfs-onnx") / "tts_models" / "t2s_encoder_fp32.onnx", POINTER)
    full = shorten(linked_copy(demo_root, models, "short") / "tts_models" / "t2s_shared_fp16.bin", 1 << 20)

    result = run_check(models, demo_root / "GenieData")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("OK   alice: V2ProPlus") for line in lines), lines
    assert f"ERROR lfs-bin: {models / 'lfs-bin/tts_models/vits_fp16.bin'} {LFS_ADVICE}" in lines
    assert f"ERROR lfs-onnx: {models / 'lfs-onnx/tts_models/t2s_encoder_fp32.onnx'} {LFS_ADVICE}" in lines
    short = f"ERROR short: {models / 'short/tts_models/t2s_shared_fp16.bin'} is truncated: {full - (1 << 20)} bytes"
    assert any(line.startswith(f"{short}, the graph t2s_first_stage_decoder_fp32.onnx needs at least {full}") for line in lines)

    # the server's own start-up goes through the same check: the broken voices are skipped, alice is loaded
    _, found = find_voices(models, demo_root / "GenieData", allow_download=False, with_demo=False, cache_dir=CACHE)
    voices = dict(found)
    assert not isinstance(voices["alice"], VoiceError)
    assert "Git LFS pointer" in str(voices["lfs-bin"]) and "Git LFS pointer" in str(voices["lfs-onnx"])
    assert "is truncated" in str(voices["short"])


# ---- with small hand-made files -----------------------------------------------------------------------


def external_graph(path: Path, location: str, spans: list[tuple[int, int]]) -> None:
    """A graph whose only content is initializers kept in `location` at (offset, length)."""
    tensors = []
    for index, (offset, length) in enumerate(spans):
        tensor = TensorProto(name=f"w{index}", data_type=TensorProto.FLOAT, dims=[length // 4])
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
            tensor.external_data.add(key=key, value=value)
        tensors.append(tensor)
    onnx.save(helper.make_model(helper.make_graph([], "weights", [], [], tensors)), str(path))


def test_a_pointer_placeholder_is_refused(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    (voice / "tts_models" / "prompt_encoder_fp16.bin").write_bytes(POINTER)
    with pytest.raises(VoiceError, match=r"prompt_encoder_fp16.bin is a Git LFS pointer, not the file: run `git lfs pull`"):
        inspect_voice(voice)


def test_the_largest_span_of_every_tensor_counts(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    models = voice / "tts_models"
    external_graph(models / "t2s_encoder_fp32.onnx", "t2s_encoder_fp32.bin", [(0, 400), (400, 800), (64, 16)])
    (models / "t2s_encoder_fp32.bin").write_bytes(bytes(1196))
    with pytest.raises(VoiceError, match="truncated: 1196 bytes, the graph t2s_encoder_fp32.onnx needs at least 1200"):
        inspect_voice(voice)
    (models / "t2s_encoder_fp32.bin").write_bytes(bytes(1200))
    assert inspect_voice(voice).kind == "V2ProPlus"


def test_an_fp16_weight_file_needs_half_the_span_its_graph_records(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    models = voice / "tts_models"
    external_graph(models / "vits_fp32.onnx", "vits_fp32.bin", [(0, 4000)])  # a name Genie's loader ignores
    (models / "vits_fp16.bin").write_bytes(bytes(2000))
    assert inspect_voice(voice).kind == "V2ProPlus"
    (models / "vits_fp16.bin").write_bytes(bytes(1998))
    with pytest.raises(VoiceError, match="vits_fp16.bin is truncated: 1998 bytes, the graph vits_fp32.onnx needs at least 2000"):
        inspect_voice(voice)


def test_a_graph_that_is_not_onnx_is_named(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    (voice / "tts_models" / "vits_fp32.onnx").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(VoiceError, match="vits_fp32.onnx is not a readable ONNX graph"):
        inspect_voice(voice)
