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
