"""The setup scripts say what is missing before pip fails on it: jieba_fast needs a C compiler to build."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.server_process import ROOT


def run_check_compiler(path: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/bash", "-c", f"source {ROOT / 'scripts' / 'venv.sh'} && check_compiler"],
        cwd=cwd,
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_without_a_compiler_the_setup_stops_with_one_line_per_platform(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_check_compiler(str(empty), tmp_path)  # a folder with no .venv and a PATH with no compiler
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "jieba_fast" in message
    for platform in ("Debian/Ubuntu", "macOS", "Windows"):
        assert platform in message


def test_with_a_compiler_on_the_path_it_goes_on(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    compiler = tools / "cc"
    compiler.write_text("#!/bin/sh\nexit 0\n")
    compiler.chmod(0o755)
    result = run_check_compiler(f"{tools}{os.pathsep}/usr/bin:/bin", tmp_path)
    assert result.returncode == 0, result.stderr


def run_check_python(path: str, cwd: Path, python: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": path, **({"PYTHON": python} if python else {})}
    return subprocess.run(
        ["/bin/bash", "-c", f"source {ROOT / 'scripts' / 'venv.sh'} && check_python"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def fake_python(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    python = folder / "python3"
    python.write_text(f"#!/bin/sh\necho {version}\n")
    python.chmod(0o755)
    return python


def test_another_python_than_3_11_stops_the_setup_with_what_to_do(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin", "3.13")
    result = run_check_python(str(tmp_path / "bin"), tmp_path)
    assert result.returncode == 1
    assert "Python 3.13" in result.stderr and "needs Python 3.11" in result.stderr and "PYTHON=python3.11" in result.stderr

    missing = run_check_python(str(tmp_path / "empty"), tmp_path)
    assert missing.returncode == 1 and "needs Python 3.11" in missing.stderr


def test_python_3_11_goes_on_also_when_named_by_python(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin", "3.11")
    assert run_check_python(str(tmp_path / "bin"), tmp_path).returncode == 0
    named = fake_python(tmp_path / "other", "3.11")
    fake_python(tmp_path / "bin", "3.12")
    result = run_check_python(str(tmp_path / "bin"), tmp_path, python=str(named))
    assert result.returncode == 0, result.stderr
