"""Yes/no values from the environment, in the spellings settings.py accepts: also read by the engine's offline
tools, which may not import the settings (tests/test_architecture.py)."""

from __future__ import annotations

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_bool(value: str) -> bool:
    """`value` as a boolean, ignoring case and surrounding whitespace; ValueError for any other spelling."""
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")
