"""Settings from the environment, with CLI overrides, and every variable documented in .env.example."""

from __future__ import annotations

import re
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


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})
    with pytest.raises(ValueError, match="DEMO"):
        Settings.from_env({"DEMO": "maybe"})
    with pytest.raises(ValueError, match="WORKERS"):
        Settings(workers=0).validate()


def test_env_example_documents_every_setting_with_its_default() -> None:
    documented = dict(re.findall(r"^#?\s*([A-Z_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.MULTILINE))
    defaults = Settings()
    for item in fields(Settings):
        name = item.name.upper()
        assert name in documented, f"{name} missing from .env.example"
        if name != "CACHE_DIR":
            value = getattr(defaults, item.name)
            expected = {True: "1", False: "0"}.get(value, str(value)) if isinstance(value, bool) else str(value)
            assert documented[name] == expected, f"{name}: .env.example says {documented[name]!r}, default is {expected!r}"
    assert "GENIE_DATA_DIR" in documented
