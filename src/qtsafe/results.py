"""The base of every command's result: a frozen dataclass with a status, a summary and a plain ``to_dict``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qtsafe.status import Status


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: nested results and dataclasses as dicts, enums by value, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if isinstance(value, Status):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Result:
    """What every entry point returns: ``status`` (mapped to the exit code by the CLI) and a one-line ``summary``.

    Subclasses are frozen dataclasses that add their own fields; ``to_dict`` lists every field in declaration
    order (``status`` and ``summary`` first) as plain data.
    """

    status: Status
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
