"""Voice folder validation: each broken folder gets a precise message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.voices.voice_folder import BASE_FILES, PROMPT_ENCODER_FILES, VoiceError, inspect_voice, normalize_language, scan


def make_voice(root: Path, name: str = "alice", *, seconds: float = 5.0, language: str = "ja", kind: str = "V2ProPlus") -> Path:
    voice = root / name
    models = voice / "tts_models"
    models.mkdir(parents=True)
    files = BASE_FILES + (PROMPT_ENCODER_FILES if kind == "V2ProPlus" else ())
    for file in files:
        (models / file).write_bytes(b"" if file.endswith(".onnx") else b"x")  # an empty graph: no weights
    (voice / "reference").mkdir()
    sf.write(voice / "reference" / "audio.wav", np.zeros(int(seconds * 32000), dtype=np.float32), 32000)
    (voice / "reference" / "config.json").write_text(json.dumps({"text": "こんにちは", "language": language}))
    return voice


def test_valid_v2proplus_and_v2(tmp_path: Path) -> None:
    folder = inspect_voice(make_voice(tmp_path))
    assert (folder.name, folder.kind, folder.language, folder.warnings) == ("alice", "V2ProPlus", "ja", [])
    assert inspect_voice(make_voice(tmp_path, "bob", kind="V2")).kind == "V2"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ZH", "zh"),
        ("english", "en"),
        ("jp", "ja"),
        ("Ja", "ja"),
        ("ko", "ko"),
        ("Korean", "ko"),
        ("fr", None),
        (3, None),
    ],
)
def test_language_aliases(value: object, expected: str | None) -> None:
    assert normalize_language(value) == expected


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    (voice / "tts_models" / "vits_fp16.bin").unlink()
    with pytest.raises(VoiceError, match="vits_fp16.bin"):
        inspect_voice(voice)


def test_half_a_prompt_encoder_is_an_error(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    (voice / "tts_models" / "prompt_encoder_fp16.bin").unlink()
    with pytest.raises(VoiceError, match="prompt_encoder_fp32.onnx but not prompt_encoder_fp16.bin"):
        inspect_voice(voice)


def test_bad_json_and_bad_fields(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    config = voice / "reference" / "config.json"
    config.write_text("{text: nope")
    with pytest.raises(VoiceError, match="not valid JSON"):
        inspect_voice(voice)
    config.write_text(json.dumps(["text"]))
    with pytest.raises(VoiceError, match="must be an object"):
        inspect_voice(voice)
    config.write_text(json.dumps({"text": "", "language": "ja"}))
    with pytest.raises(VoiceError, match='"text"'):
        inspect_voice(voice)
    config.write_text(json.dumps({"text": "hi", "language": "klingon"}))
    with pytest.raises(VoiceError, match="unknown \"language\" 'klingon'"):
        inspect_voice(voice)


def test_reference_audio_problems(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    audio = voice / "reference" / "audio.wav"
    audio.write_bytes(b"this is not audio at all")
    with pytest.raises(VoiceError, match="not readable audio"):
        inspect_voice(voice)
    audio.unlink()
    with pytest.raises(VoiceError, match="missing .*audio.wav"):
        inspect_voice(voice)


def test_reference_length_outside_3_to_10_s_is_a_warning(tmp_path: Path) -> None:
    folder = inspect_voice(make_voice(tmp_path, seconds=1.5))
    assert folder.warnings and "1.5 s" in folder.warnings[0]
    assert inspect_voice(make_voice(tmp_path, "long", seconds=12)).warnings


def test_korean_voice_needs_no_genie_data_folder(tmp_path: Path) -> None:
    """Korean G2P is ours (engine/text/korean_g2p.py): a Korean voice is servable with GenieData lacking any G2P folder."""
    voice = make_voice(tmp_path, language="Korean")
    data = tmp_path / "GenieData"
    data.mkdir()
    assert inspect_voice(voice, data).language == "ko"


def test_language_needing_genie_data_g2p(tmp_path: Path) -> None:
    voice = make_voice(tmp_path, language="zh")
    data = tmp_path / "GenieData"
    data.mkdir()
    with pytest.raises(VoiceError, match="ChineseG2P"):
        inspect_voice(voice, data)
    (data / "G2P" / "ChineseG2P").mkdir(parents=True)
    assert inspect_voice(voice, data).language == "zh"


def test_scan_reports_every_folder(tmp_path: Path) -> None:
    make_voice(tmp_path, "good")
    shutil.rmtree(make_voice(tmp_path, "bad") / "reference")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.md").write_text("not a voice")
    results = scan(tmp_path)
    assert [name for name, _ in results] == ["bad", "good"]
    assert isinstance(results[0][1], VoiceError) and "config.json" in str(results[0][1])
    assert scan(tmp_path / "missing") == []


def add_style(voice: Path, name: str, config: object = None, *, seconds: float = 5.0) -> Path:
    style = voice / "reference" / name
    style.mkdir()
    sf.write(style / "audio.wav", np.zeros(int(seconds * 32000), dtype=np.float32), 32000)
    (style / "config.json").write_text(json.dumps(config if config is not None else {"text": "やあ"}))
    return style


def test_styles_are_found_and_inherit_the_language(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    add_style(voice, "calm")
    add_style(voice, "news-2", {"text": "Hello there.", "language": "en"})
    folder = inspect_voice(voice)
    assert sorted(folder.styles) == ["calm", "news-2"]
    assert (folder.styles["calm"].text, folder.styles["calm"].language) == ("やあ", "ja")
    assert folder.styles["news-2"].language == "en"
    assert folder.styles["calm"].audio == voice / "reference" / "calm" / "audio.wav"
    assert folder.warnings == []


def test_broken_or_badly_named_styles_are_skipped_with_a_warning(tmp_path: Path) -> None:
    voice = make_voice(tmp_path)
    add_style(voice, "default")
    add_style(voice, "two words")
    add_style(voice, "nojson", {"language": "ja"})
    (voice / "reference" / "noaudio").mkdir()
    (voice / "reference" / "noaudio" / "config.json").write_text(json.dumps({"text": "x"}))
    add_style(voice, "short", seconds=1.0)
    folder = inspect_voice(voice)
    assert list(folder.styles) == ["short"]  # served, with a warning about its length
    warnings = "\n".join(folder.warnings)
    for expected in (
        "'default' skipped",
        "'two words' skipped",
        "'nojson' skipped",
        "'noaudio' skipped: missing",
        "style 'short': reference audio is 1.0 s",
    ):
        assert expected in warnings
