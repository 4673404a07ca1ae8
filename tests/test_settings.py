"""Settings from the environment, with CLI overrides, and every variable documented in .env.example."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest

from settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_environment_and_overrides() -> None:
    settings = Settings.from_env({"PORT": "9000", "DEMO": "yes", "MODELS_DIR": "voices", "WORKERS": "3", "API_KEY": ""})
    assert (settings.port, settings.demo, settings.models_dir, settings.workers, settings.api_key) == (
        9000,
        True,
        Path("voices"),
        3,
        "",
    )
    assert settings.with_overrides(port=7000, demo=None).port == 7000
    assert settings.with_overrides(demo=None).demo is True


@pytest.mark.parametrize("value", ["1", "TRUE", " yes ", "On", "0", "False", "no", "OFF\n", "maybe", " Maybe "])
def test_the_voice_preparer_reads_genie_download_as_the_server_does(value: str) -> None:
    """engine/tools/prepare.py may not import the settings: both read booleans with engine/envflags.py."""
    from engine.tools.prepare import genie_download_allowed

    def outcome(read: Callable[[], bool]) -> bool | str:
        try:
            return read()
        except ValueError as error:
            return str(error)

    server = outcome(lambda: Settings.from_env({"GENIE_DOWNLOAD": value}).genie_download)
    assert outcome(lambda: genie_download_allowed({"GENIE_DOWNLOAD": value})) == server


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})
    with pytest.raises(ValueError, match="DEMO"):
        Settings.from_env({"DEMO": "maybe"})
    with pytest.raises(ValueError, match="WORKERS"):
        Settings(workers=0).validate()


def test_env_example_documents_every_setting_with_its_default() -> None:
    documented = dict(re.findall(r"^#?\s*([A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.MULTILINE))
    defaults = Settings()
    for item in fields(Settings):
        name = item.name.upper()
        assert name in documented, f"{name} missing from .env.example"
        if name != "CACHE_DIR":
            value = getattr(defaults, item.name)
            expected = {True: "1", False: "0"}.get(value, str(value)) if isinstance(value, bool) else str(value)
            assert documented[name] == expected, f"{name}: .env.example says {documented[name]!r}, default is {expected!r}"
    assert "GENIE_DATA_DIR" in documented


def test_a_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# my Space's settings\n\nAPI_KEY='s3cret'\nexport WORKERS=3\nPORT = 9000\nALLOWED_ORIGINS=\"https://a.example\"\n"
    )
    settings = Settings.from_env({"PORT": "8000"}, dotenv=dotenv)
    assert (settings.api_key, settings.workers, settings.port, settings.allowed_origins) == (
        "s3cret",
        3,
        8000,
        "https://a.example",
    )
    assert Settings.from_env({}, dotenv=tmp_path / "absent").port == 7860  # no file: the defaults


def test_a_broken_dotenv_line_names_the_file_and_line(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("WORKERS=2\nthis is not a setting\n")
    with pytest.raises(ValueError, match=r"\.env, line 2"):
        Settings.from_env({}, dotenv=dotenv)


def test_the_server_reads_dotenv_from_its_working_directory(tmp_path: Path) -> None:
    """`python server.py --check` in a folder whose .env names the models folder: the server used it."""
    import subprocess
    import sys

    (tmp_path / ".env").write_text(f"MODELS_DIR={tmp_path / 'voices-from-dotenv'}\nGENIE_DOWNLOAD=0\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--check"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "no voice folders in " + str(tmp_path / "voices-from-dotenv") in result.stdout, result.stdout + result.stderr
    assert "GENIE_DOWNLOAD=0" in result.stdout  # also from .env: missing GenieData is then an error
    assert result.returncode == 1


def test_t2s_precision_is_fp32_by_default_and_only_fp32_or_int8() -> None:
    assert Settings().t2s_precision == "fp32"
    assert Settings.from_env({"T2S_PRECISION": "int8"}).t2s_precision == "int8"
    Settings(t2s_precision="int8").validate()
    with pytest.raises(ValueError, match="T2S_PRECISION must be fp32 or int8"):
        Settings.from_env({"T2S_PRECISION": "fp16"}).validate()
