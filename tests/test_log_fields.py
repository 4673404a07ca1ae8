"""Client-chosen values in log lines (api/log_fields.py); the end-to-end check is tests/test_log_injection_e2e.py."""

from __future__ import annotations

from api.log_fields import MAX_CHARS, field


def test_line_breaks_nul_and_spaces_cannot_leave_the_field() -> None:
    forged = "/foo\r\n2026-11-30 00:00:00,000 INFO gsv.request request_id=forged outcome=ok\x00"
    escaped = field(forged)
    assert escaped == r"/foo\x0d\x0a2026-11-30\x2000:00:00,000\x20INFO\x20gsv.request\x20request_id=forged\x20outcome=ok\x00"
    assert escaped.isprintable() and " " not in escaped


def test_other_non_printables_and_the_escape_character_itself() -> None:
    assert field("a\u2028b\x85c\u200bd\U000e0001") == r"a\u2028b\x85c\u200bd\U000e0001"
    assert field("\\x0a") == r"\\x0a"  # a literal backslash cannot pose as an escape
    assert field("/v1/voices/ミカ") == "/v1/voices/ミカ"  # printable text stays readable


def test_length_is_capped() -> None:
    assert field("a" * 10_000) == "a" * MAX_CHARS + "..."
    assert len(field("\x00" * 10_000)) == 4 * MAX_CHARS + 3
    assert field("abc", limit=2) == "ab..."
