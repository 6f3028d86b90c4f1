"""Export a window of the stream to a JSONL file (the samples' format), for replay and incident bundles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from qtsafe.fsio import atomic_writer
from qtsafe.status import Status
from qtsafe.telemetry.read import open_read
from qtsafe.telemetry.sources import Progress, Source
from qtsafe.telemetry.window import Window


@dataclasses.dataclass(frozen=True)
class ExportResult:
    status: Status
    path: Path
    entries: int
    first_id: str | None
    last_id: str | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"command": "export", "status": self.status.value, "path": str(self.path), "entries": self.entries,
                "first_id": self.first_id, "last_id": self.last_id, "summary": self.summary}


def _text(value: bytes) -> str:
    # Stream values are bytes; non-UTF-8 bytes survive the round trip as surrogate escapes.
    return value.decode("utf-8", "surrogateescape")


def export_window(source: Source, window: Window, path: Path, *, progress: Progress | None = None) -> ExportResult:
    """Write every entry of the window, unparsed, one JSON object a line; atomic as a whole file."""
    count = 0
    first = last = None
    read = open_read(source, window)
    with atomic_writer(path) as handle:
        for page in read.pages(progress):
            lines = []
            for entry_id, fields in page:
                ident = entry_id.decode("ascii")
                record = {"id": ident, "fields": {_text(fields[i]): _text(fields[i + 1])
                                                  for i in range(0, len(fields) - 1, 2)}}
                lines.append(json.dumps(record, ensure_ascii=True))
                first = first or ident
                last = ident
            count += len(lines)
            if lines:
                handle.write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    status = Status.PASS if count else Status.FAIL
    summary = (f"exported {count:,} entries ({first} .. {last}) to {path}" if count
               else f"FAIL: no entries in the window; wrote an empty {path}")
    return ExportResult(status, path, count, first, last, summary)
