"""A minimal Universal Binary JSON reader, enough for XGBoost's ``.ubj`` model files.

XGBoost writes its model as UBJSON (https://ubjson.org, draft 12, big-endian numbers, optimized
``$type#count`` containers for the tree arrays). Inspecting a model needs only the learner's header
(feature names, ``num_feature``, objective, version), so large typed arrays are skipped by length
instead of decoded: a 300 KB booster reads in milliseconds and nothing from xgboost is imported.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

__all__ = ["SkippedArray", "UbjError", "loads"]


class UbjError(ValueError):
    """Malformed or truncated UBJSON."""

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


@dataclasses.dataclass(frozen=True)
class SkippedArray:
    """A typed numeric array that was measured, not decoded."""

    marker: str
    count: int


_FIXED = {"i": (">b", 1), "U": (">B", 1), "I": (">h", 2), "l": (">i", 4), "L": (">q", 8), "d": (">f", 4),
          "D": (">d", 8)}
_MAX_DEPTH = 256


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0:
            raise UbjError(f"negative length {n} at byte {self.pos}")
        end = self.pos + n
        if end > len(self.data):
            raise UbjError(f"data ends at byte {len(self.data)} while reading {n} bytes at {self.pos}", truncated=True)
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def marker(self) -> str:
        return self.take(1).decode("latin-1")

    def fixed(self, marker: str) -> Any:
        fmt, size = _FIXED[marker]
        return struct.unpack(fmt, self.take(size))[0]

    def length(self) -> int:
        marker = self.marker()
        if marker not in ("i", "U", "I", "l", "L"):
            raise UbjError(f"expected an integer length at byte {self.pos - 1}, got {marker!r}")
        value = int(self.fixed(marker))
        if value < 0:
            raise UbjError(f"negative length at byte {self.pos}")
        return value

    def string(self) -> str:
        raw = self.take(self.length())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UbjError(f"invalid UTF-8 string at byte {self.pos - len(raw)}") from exc

    def value(self, marker: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise UbjError("UBJSON nested too deeply")
        if marker in _FIXED:
            return self.fixed(marker)
        if marker == "Z":
            return None
        if marker == "T":
            return True
        if marker == "F":
            return False
        if marker == "C":
            return self.take(1).decode("latin-1")
        if marker in ("S", "H"):
            return self.string()
        if marker == "[":
            return self.array(depth)
        if marker == "{":
            return self.obj(depth)
        raise UbjError(f"unknown UBJSON marker {marker!r} at byte {self.pos - 1}")

    def container_header(self) -> tuple[str | None, int | None]:
        elem_type: str | None = None
        count: int | None = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            elem_type = self.marker()
            if self.data[self.pos:self.pos + 1] != b"#":
                raise UbjError(f"typed container without a count at byte {self.pos}")
        if self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            count = self.length()
        return elem_type, count

    def array(self, depth: int) -> Any:
        elem_type, count = self.container_header()
        if elem_type is not None and count is not None and elem_type in _FIXED:
            self.take(count * _FIXED[elem_type][1])  # measured and skipped: tree arrays are large
            return SkippedArray(elem_type, count)
        out: list[Any] = []
        if count is not None:
            for _ in range(count):
                out.append(self.value(elem_type or self.marker(), depth + 1))
            return out
        while True:
            marker = self.marker()
            if marker == "]":
                return out
            if marker == "N":
                continue
            out.append(self.value(marker, depth + 1))

    def obj(self, depth: int) -> dict[str, Any]:
        elem_type, count = self.container_header()
        out: dict[str, Any] = {}
        if count is not None:
            for _ in range(count):
                key = self.string()
                out[key] = self.value(elem_type or self.marker(), depth + 1)
            return out
        while True:
            if self.data[self.pos:self.pos + 1] == b"}":
                self.pos += 1
                return out
            if self.pos >= len(self.data):
                raise UbjError(f"data ends at byte {self.pos} inside an object", truncated=True)
            key = self.string()
            marker = self.marker()
            while marker == "N":
                marker = self.marker()
            out[key] = self.value(marker, depth + 1)


def loads(data: bytes) -> Any:
    """Decode one UBJSON value; trailing bytes are an error (a model file holds exactly one)."""
    reader = _Reader(data)
    value = reader.value(reader.marker(), 0)
    if reader.pos != len(data):
        raise UbjError(f"{len(data) - reader.pos} unexpected bytes after the UBJSON value at byte {reader.pos}")
    return value
