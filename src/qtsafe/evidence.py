"""Gathering evidence: read one window from a source into columns, note trimming, time the read."""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from qtsafe.telemetry.columns import Telemetry
from qtsafe.telemetry.ids import last_id_of_ms, parse_stream_id
from qtsafe.telemetry.merge import merge_telemetry
from qtsafe.telemetry.parse import TelemetryBuilder
from qtsafe.telemetry.read import open_read
from qtsafe.telemetry.sources import Progress, RedisStreamSource, ServerMark, Source
from qtsafe.telemetry.window import Window


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


# Slices per worker: small slices keep each worker's result (and its pickled copy) small and let the workers
# finish together; each costs a connection and a few Redis calls (docs/performance.md).
_SLICES_PER_WORKER = 4

# The source a forked worker reads from and the server the read began on (set in the parent just
# before the fork; fork copies them): a worker that connects after a restart must not read the new server.
_WORKER_SOURCE: tuple[RedisStreamSource, ServerMark] | None = None


def _read_range(bounds: tuple[str, str]) -> Telemetry:
    """Worker process: read one slice of the window through its own connection."""
    assert _WORKER_SOURCE is not None
    parent, mark = _WORKER_SOURCE
    source = parent.reopened()
    builder = TelemetryBuilder()
    with gc_paused():
        for page in source.pages(*bounds, since=mark):
            builder.feed(page)
        return builder.build()


def _slices(first_id: str, last_id: str, start: str, end: str, count: int) -> list[tuple[str, str]]:
    """Split [start, end] into ``count`` consecutive slices of equal stream time between the first and last IDs."""
    first_ms, _ = parse_stream_id(first_id)
    last_ms, _ = parse_stream_id(last_id)
    span = last_ms - first_ms
    if span < count * 2:
        return [(start, end)]
    cuts = [first_ms + span * k // count for k in range(1, count)]
    starts = [start] + [f"{cut}-0" for cut in cuts]
    ends = [last_id_of_ms(cut - 1) for cut in cuts] + [end]
    return list(zip(starts, ends, strict=True))


def _gather_parallel(source: RedisStreamSource, start: str, end: str, workers: int,
                     progress: Progress | None, total: int, mark: ServerMark,
                     idle: Callable[[], None] | None = None) -> Telemetry | None:
    """Read the window in time slices on ``workers`` processes and merge them in order; None if not worth it."""
    global _WORKER_SOURCE
    bounds = source.bounds(start, end)
    if bounds is None:
        return None
    slices = _slices(bounds[0], bounds[1], start, end, workers * _SLICES_PER_WORKER)
    if len(slices) < 2:
        return None
    _WORKER_SOURCE = (source, mark)
    parts: list[Telemetry] = []
    try:
        # fork: the workers inherit the loaded modules (no re-import) and open their own Redis connections.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.imap(_read_range, slices)
            if idle is not None:
                idle()  # the caller's own work while the workers read (after the fork: the workers do not see it)
            for part in results:
                parts.append(part)
                if progress is not None:
                    progress(sum(p.read for p in parts), total)
    finally:
        _WORKER_SOURCE = None
    return merge_telemetry(parts)


def gather(source: Source, window: Window, *, progress: Progress | None = None, workers: int = 1,
           parallel_min: int = 200_000, idle: Callable[[], None] | None = None) -> Evidence:
    """Read ``window`` from ``source`` page by page into columns. Raises TelemetryError/InputError.

    A Redis stream of at least ``parallel_min`` entries is read by ``workers`` processes, each taking a
    consecutive slice of the window by stream time, and the slices are merged in order: the decoder is the
    bottleneck and the GIL keeps one process on one core (docs/performance.md). ``idle`` is called once in
    this process while the workers read (never on the one-process path, where this process is the reader).
    """
    started = time.perf_counter()
    # Who serves the stream as the read begins: every page read (here or in a worker) must come from it.
    read = open_read(source, window, marked=True)
    mark, total = read.mark, read.total
    telemetry = None
    if (workers > 1 and isinstance(source, RedisStreamSource) and mark is not None
            and source.reconnect is not None and total >= parallel_min):
        telemetry = _gather_parallel(source, read.start, window.end_id, workers, progress, total, mark, idle)
    if telemetry is None:
        builder = TelemetryBuilder()
        with gc_paused():
            for page in read.pages(progress):
                builder.feed(page)
            telemetry = builder.build()
    trimmed = trim_report(source.trim_info(), window.start_id)
    if isinstance(source, RedisStreamSource) and mark is not None:
        # The trimming figures too must describe the stream that was read.
        source.verify_unchanged(mark)
    return Evidence(telemetry, window, source.describe(), trimmed, time.perf_counter() - started)


def gather_before(source: Source, before_id: str, count: int) -> Telemetry:
    """The ``count`` stream entries just before ``before_id`` (the pre-cutover baseline window)."""
    builder = TelemetryBuilder()
    pages = list(source.pages_before(before_id, count)) if count > 0 else []
    with gc_paused():
        for page in reversed(pages):
            builder.feed(page)
    return builder.build()
