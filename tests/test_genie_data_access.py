"""GenieData the server's user may not read: a clear start-up error naming the path and the fix, never a traceback.

Tests here may run as root, for whom every file is readable, so most of them make the read fail by patching
(`os.access`, `Path.exists`); the one with real permissions is skipped as root.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import server
from engine import genie
from engine.genie import GenieDataMissing
from engine.models.genie_data import resolve_genie_data
from engine.models.scratch import scratch_folder
from engine.tools import demo


def fake_genie_data(root: Path) -> Path:
    data = root / "GenieData"
    (data / "chinese-hubert-base").mkdir(parents=True)
    (data / "chinese-hubert-base" / "chinese-hubert-base.onnx").write_bytes(b"hubert")
    (data / "speaker_encoder.onnx").write_bytes(b"encoder")
    (data / "G2P" / "EnglishG2P").mkdir(parents=True)
    (data / "G2P" / "EnglishG2P" / "cmudict.rep").write_text("HELLO  HH AH0 L OW1\n")
    return data


def assert_says_how_to_fix(error: GenieDataMissing, data: Path, path: Path) -> None:
    message = str(error)
    assert f"permission denied on {path}" in message, message
    assert f"`chmod -R a+rX {data}`" in message, message


def test_a_folder_it_may_not_enter_is_named_with_the_chmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = fake_genie_data(tmp_path)
    locked = data / "G2P"
    real_access = os.access
    monkeypatch.setattr(genie.os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(GenieDataMissing) as raised:
        resolve_genie_data(data, allow_download=False)
    assert_says_how_to_fix(raised.value, data, locked)


def test_an_unreadable_file_is_named_with_the_chmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = fake_genie_data(tmp_path)
    locked = data / "chinese-hubert-base" / "chinese-hubert-base.onnx"
    real_access = os.access
    monkeypatch.setattr(genie.os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(GenieDataMissing) as raised:
        genie.missing_data(data)
    assert_says_how_to_fix(raised.value, data, locked)


def test_a_permission_error_while_looking_is_reported_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GenieData itself unreadable: looking for its files raises PermissionError (Path.exists does not swallow it)."""
    data = fake_genie_data(tmp_path)
    target = data / genie.REQUIRED_DATA[0]

    def exists(path: Path) -> bool:
        raise PermissionError(errno.EACCES, "Permission denied", str(target))

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(GenieDataMissing) as raised:
        genie.missing_data(data)
    assert_says_how_to_fix(raised.value, data, target)


def test_check_reports_unreadable_genie_data_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = fake_genie_data(tmp_path)
    locked = data / "G2P"
    real_access = os.access
    monkeypatch.setattr(genie.os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    monkeypatch.setenv("GENIE_DATA_DIR", str(data))
    monkeypatch.setenv("GENIE_DOWNLOAD", "0")
    assert server.main(["--check", "--models", str(tmp_path / "models")]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"ERROR GenieData at {data} is not readable") and "chmod -R a+rX" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its mode: the patched tests above cover it")
def test_real_permissions(tmp_path: Path) -> None:
    data = fake_genie_data(tmp_path)
    locked = data / "G2P"
    locked.chmod(0)
    try:
        with pytest.raises(GenieDataMissing) as raised:
            resolve_genie_data(data, allow_download=False)
    finally:
        locked.chmod(0o755)
    assert_says_how_to_fix(raised.value, data, locked)


def test_a_finished_demo_build_is_readable_by_every_user(tmp_path: Path) -> None:
    """A build's scratch folder is private (mkdtemp: 0700); what it becomes is read by a server of another user."""
    target = tmp_path / "demo"
    with scratch_folder(tmp_path, "demo") as scratch:
        assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
        (scratch / "tts_models").mkdir(mode=0o700)
        (scratch / "tts_models" / "vits_fp16.bin").write_bytes(b"weights")
        (scratch / "tts_models" / "vits_fp16.bin").chmod(0o600)
        demo._replace(scratch, target)
    for path in (target, target / "tts_models"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o555 == 0o555, oct(path.stat().st_mode)
    assert stat.S_IMODE((target / "tts_models" / "vits_fp16.bin").stat().st_mode) == 0o644
