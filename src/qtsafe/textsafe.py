"""Make untrusted text (model and feature names from telemetry or the command line) safe to show on one line.

A name is data, never layout: a newline in it must not start a forged ``PASS:`` line, a carriage return or an
ANSI escape must not rewrite the terminal, an RTL override must not reorder what a person reads. Text, Markdown
and metrics labels show such characters escaped (``\\n``, ``\\u202e``); JSON keeps the real string (json.dumps
escapes it).
"""

from __future__ import annotations

import unicodedata

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Control, format (bidi overrides, zero-width), line/paragraph separators, lone surrogates, unassigned.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})


def _code(char: str) -> str:
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN


def visible(text: object) -> str:
    """``text`` on one line with every control or invisible formatting character escaped, and ``\\`` doubled.

    >>> visible("xgb\\nPASS: quality gate")
    'xgb\\\\nPASS: quality gate'
    """
    value = str(text)
    if value.isprintable() and "\\" not in value:
        return value  # the common case, and it stays fast
    return "".join(_SHORT.get(c) or (_code(c) if _hidden(c) else c) for c in value)


def visible_lines(text: str) -> str:
    """Like :func:`visible` for every line of an already laid-out text: its newlines stay, nothing else hides.

    For output whose line structure is the program's own (a rendered summary); names inside it must already
    have gone through :func:`visible`, since a newline in one is indistinguishable here from a real one.
    """
    return "\n".join(visible_keep_backslash(line) for line in text.split("\n"))


def visible_keep_backslash(text: str) -> str:
    """:func:`visible` without doubling backslashes: for text that was escaped once already (paths, messages)."""
    if text.isprintable():
        return text
    return "".join((_SHORT[c] if c in "\n\r\t" else _code(c)) if _hidden(c) else c for c in text)


def metric_label(value: object) -> str:
    """A Prometheus label value: ``\\``, ``"`` and newline escaped as the text exposition format says; any other
    control or invisible character shown as a visible escape (the format has no escape for it)."""
    out = []
    for char in str(value):
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif _hidden(char):
            out.append("\\" + _code(char))  # a literal backslash in the label's value, then the code
        else:
            out.append(char)
    return "".join(out)


__all__ = ["metric_label", "visible", "visible_keep_backslash", "visible_lines"]
