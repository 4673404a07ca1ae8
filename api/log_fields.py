"""Client-supplied values made safe to put in a log line.

A request's path is percent-decoded, so it can hold CR, LF or NUL: logged as it is, `/x%0D%0A<a whole log
line>` forges a line. Every value a client chooses goes through `field` before it is logged: one line per
record, one `key=value` per field (spaces are escaped too), and a bounded length.
"""

from __future__ import annotations

MAX_CHARS = 200


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable() and not char.isspace():
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def field(value: object, limit: int = MAX_CHARS) -> str:
    """`value` with backslashes, whitespace and non-printable characters escaped, cut after `limit` characters."""
    text = str(value)
    escaped = "".join(map(_escape, text[:limit]))
    return escaped + "..." if len(text) > limit else escaped
