"""Gathering evidence: read one window from a source into columns, note trimming, time the read."""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qtsafe.telemetry.parse import Telemetry, TelemetryBuilder
from qtsafe.telemetry.sources import Progress, Source
from qtsafe.telemetry.window import Window
from qtsafe.timeutil import parse_stream_id


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One window's telemetry plus what is known about entries lost to the stream cap."""

    telemetry: Telemetry
    window: Window
    source: str
    trimmed: dict[str, Any]
    read_seconds: float


@contextmanager
def gc_paused() -> Iterator[None]:
    # The reader allocates millions of short-lived objects and keeps no cycles; collector passes
    # during the read cost ~25 % of the wall time (measured, docs/performance.md).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def trim_report(info: dict[str, Any], start_id: str) -> dict[str, Any]:
    """Did the stream cap delete entries at or after the cutover before we read them?

    Trimming (``MAXLEN ~``) deletes the oldest entries. Redis 7 counts ``entries-added``; with the
    length that gives how many entries the stream has lost. If it has lost any and its oldest
    retained entry is newer than the cutover, entries between the two may have been trimmed: that is
    reported (fail-closed: possibly is reported, never assumed away). ``max-deleted-entry-id`` is
    used too, though Redis 7.0 updates it only on XDEL.
    """
    if not info:
        return {"checked": False, "detected": False, "note": "not a Redis stream; trimming not applicable"}
    added, length = info.get("entries_added"), int(info.get("length", 0) or 0)
    if added is None:
        return {"checked": False, "detected": False,
                "note": "the server does not report entries-added (Redis < 7); trimming cannot be detected"}
    lost = max(added - length, 0)
    first = info.get("first_id")
    deleted = info.get("max_deleted_id")
    after_cutover = start_id == "-" or (
        deleted not in (None, "", "0-0") and parse_stream_id(deleted) >= parse_stream_id(start_id)
    ) or first is None or parse_stream_id(first) > parse_stream_id(start_id)
    detected = lost > 0 and after_cutover
    if detected and start_id == "-":
        note = (f"the stream has lost {lost} entries to its cap; with no cutover the window is whatever remains "
                f"(oldest retained entry {first})")
    elif detected:
        note = (f"entries after the cutover may have been trimmed before this read: the stream has lost {lost} "
                f"entries to its cap and its oldest retained entry ({first}) is newer than the cutover; "
                "the verdict uses what remains")
    elif lost:
        note = f"no entries after the cutover were trimmed ({lost} older entries were)"
    else:
        note = "no entries were trimmed"
    return {"checked": True, "detected": detected, "max_deleted_id": deleted, "first_retained_id": first,
            "trimmed_at_most": lost if detected else 0, "note": note}


def gather(source: Source, window: Window, *, progress: Progress | None = None) -> Evidence:
    """Read ``window`` from ``source`` page by page into columns. Raises TelemetryError/InputError."""
    started = time.perf_counter()
    total = source.check()
    start = window.start_id
    if window.last is not None:
        first = source.first_id_of_last(window.last, start, window.end_id)
        start = first if first is not None else start
    builder = TelemetryBuilder()
    with gc_paused():
        for page in source.pages(start, window.end_id, progress=progress, total=total if total >= 0 else None):
            builder.feed(page)
        telemetry = builder.build()
    trimmed = trim_report(source.trim_info(), window.start_id)
    return Evidence(telemetry, window, source.describe(), trimmed, time.perf_counter() - started)


def gather_before(source: Source, before_id: str, count: int) -> Telemetry:
    """The ``count`` stream entries just before ``before_id`` (the pre-cutover baseline window)."""
    builder = TelemetryBuilder()
    pages = list(source.pages_before(before_id, count)) if count > 0 else []
    with gc_paused():
        for page in reversed(pages):
            builder.feed(page)
    return builder.build()
