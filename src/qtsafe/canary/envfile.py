"""Anchored edits of one ``KEY=`` line of an env file, and reading a value from one. Pure bytes in, bytes out.

The old script used ``sed`` and reported success when the key was absent. Here the key must occur
exactly once as ``KEY=`` at the start of a line; every other byte of the file stays identical, including
line endings and the absence of a final newline.
"""

from __future__ import annotations

import re

from qtsafe.errors import InputError

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Values written bare: nothing systemd's EnvironmentFile parser or a shell would reinterpret.
_BARE_VALUE = re.compile(r"[A-Za-z0-9_.,:/@%+=-]*")
_LOOSE = r"^[ \t]*(?:export[ \t]+)?{key}[ \t]*="


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid environment variable name, else raise InputError."""
    if not isinstance(key, str) or ENV_KEY.fullmatch(key) is None:
        raise InputError(f"invalid env key {key!r}: use letters, digits and _ (not starting with a digit)")
    return key


def encode_value(value: str) -> str:
    """The text written after ``KEY=``: bare when safe, single-quoted when that is unambiguous, else refused."""
    if not isinstance(value, str):
        raise InputError(f"env value must be a string, got {value!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InputError(f"env value {value!r} contains a control character (newline, tab, NUL, ...)")
    if _BARE_VALUE.fullmatch(value):
        return value
    if "'" in value or "\\" in value or not value.isascii():
        raise InputError(f"env value {value!r} cannot be written unambiguously (quote, backslash or non-ASCII)")
    return f"'{value}'"


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def key_lines(data: bytes, key: str) -> list[int]:
    """Indices of the lines that assign ``key`` exactly as ``KEY=`` at the start of the line."""
    check_key(key)
    prefix = key.encode("ascii") + b"="
    return [i for i, line in enumerate(_lines(data)) if line.startswith(prefix)]


def _loose_lines(data: bytes, key: str) -> list[int]:
    pattern = re.compile(_LOOSE.format(key=re.escape(key)).encode("ascii"))
    return [i for i, line in enumerate(_lines(data)) if pattern.match(line)]


def find_single(data: bytes, key: str) -> int:
    """The index of the one line assigning ``key``; refuse when absent, duplicated or written unusually."""
    exact = key_lines(data, key)
    loose = _loose_lines(data, key)
    odd = sorted(set(loose) - set(exact))
    if odd:
        raise InputError(
            f"{key} is assigned in an unusual form on line {odd[0] + 1} (leading space or 'export'); edit it by hand"
        )
    if not exact:
        raise InputError(f"{key} does not occur in the env file (refusing to add it: nothing would be edited)")
    if len(exact) > 1:
        lines = ", ".join(str(i + 1) for i in exact)
        raise InputError(f"{key} occurs {len(exact)} times in the env file (lines {lines}); refusing to guess")
    return exact[0]


def replace_value(data: bytes, key: str, value: str) -> tuple[bytes, bytes, bytes]:
    """Return ``(new_data, old_line, new_line)`` with the one ``KEY=`` line set to ``value``.

    The line's own ending (``\\n``, ``\\r\\n`` or none) is kept, so every other byte is identical.
    """
    index = find_single(data, key)
    lines = _lines(data)
    old_line = lines[index]
    body = old_line.rstrip(b"\r\n")
    ending = old_line[len(body):]
    new_line = key.encode("ascii") + b"=" + encode_value(value).encode("ascii") + ending
    lines[index] = new_line
    return b"".join(lines), old_line, new_line


def replace_line(data: bytes, key: str, expected: bytes, replacement: bytes) -> bytes:
    """Swap the one ``KEY=`` line back, only if it is still exactly ``expected`` (used by rollback)."""
    index = find_single(data, key)
    lines = _lines(data)
    if lines[index] != expected:
        raise InputError(f"{key} line was changed by someone else since activation; restore it by hand")
    lines[index] = replacement
    return b"".join(lines)


def read_value(data: bytes, key: str) -> str | None:
    """The value of ``key`` (unquoted) if assigned in the file, else None. Last assignment wins, as in systemd."""
    pattern = re.compile(_LOOSE.format(key=re.escape(key)).encode("ascii"))
    found: str | None = None
    for line in _lines(data):
        match = pattern.match(line)
        if not match:
            continue
        raw = line[match.end():].rstrip(b"\r\n").decode("utf-8", errors="replace").strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            raw = raw[1:-1]
        elif len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        found = raw
    return found
