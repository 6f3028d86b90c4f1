"""UTC everywhere: parsing operator timestamps and durations, and the timestamps in file names."""

from __future__ import annotations

import datetime as dt
import re

from qtsafe.errors import InputError

UTC = dt.UTC


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(tz=UTC)


def parse_utc(text: str) -> dt.datetime:
    """Parse ISO 8601 with ``Z``, an offset, or none (naive means UTC) into an aware UTC datetime."""
    raw = text.strip()
    if not raw:
        raise InputError("empty timestamp")
    candidate = raw[:-1] + "+00:00" if raw[-1] in "zZ" else raw
    candidate = candidate.replace(" ", "T", 1) if "T" not in candidate else candidate
    try:
        parsed = dt.datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise InputError(
            f"not an ISO 8601 timestamp: {text!r} (use e.g. 2026-01-10T05:47:45Z)"
        ) from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso(moment: dt.datetime | None) -> str | None:
    """Render an aware datetime as ISO 8601 UTC with a ``Z`` suffix (None stays None)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_ms(moment: dt.datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix: for times that stream IDs are compared with."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_stamp(moment: dt.datetime | None = None) -> str:
    """``YYYYmmdd_HHMMSS`` in UTC, the timestamp the runbooks use in file names."""
    return (moment or utc_now()).astimezone(UTC).strftime("%Y%m%d_%H%M%S")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``30s``, ``10m``, ``6h`` or ``1d``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise InputError(f"not a duration: {text!r} (use e.g. 30s, 10m, 6h)")
    value = float(match.group(1))
    return value * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def format_duration(seconds: float) -> str:
    """A duration for people: ``45 s``, ``2 min``, ``1 h 30 min``, ``10 min 5 s``; under a minute keeps its fraction.

    The one formatter for limits in messages, so a sub-minute limit never prints as ``0 min``.
    """
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.3g} s" if seconds != int(seconds) else f"{sign}{int(seconds)} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    parts += [f"{secs} s"] if secs else []
    return sign + " ".join(parts)

