"""The stall rule: telemetry whose newest event is older than the limit has stopped, however healthy it looked."""

from __future__ import annotations

import datetime as dt

from qtsafe.findings import FAIL, Finding
from qtsafe.timeutil import format_duration


def stall_rule(newest_ms: int | None, until: dt.datetime | None, now: dt.datetime, limit: float) -> Finding | None:
    """A FAIL finding when the newest event (stream ms) is older than ``limit`` seconds at ``until`` or now."""
    if newest_ms is None:
        return None
    reference = min(until, now) if until is not None else now
    age = reference.timestamp() - newest_ms / 1000.0
    if age <= limit:
        return None
    return Finding("stalled", FAIL,
                   f"telemetry stalled: the newest trade.intent is {age / 60:.1f} min old "
                   f"(limit {format_duration(limit)})", "window", "whole window")
