"""The window a command judges: cutover (``--after``), ``--until`` and ``--last`` as stream IDs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from qtsafe.errors import InputError
from qtsafe.telemetry.ids import MAX_ID, MIN_ID, end_id_for, stream_id_for
from qtsafe.timeutil import iso, parse_utc


@dataclasses.dataclass(frozen=True)
class Window:
    """A resolved read window. ``start_id``/``end_id`` are inclusive XRANGE bounds."""

    after: dt.datetime | None
    until: dt.datetime | None
    last: int | None
    start_id: str
    end_id: str
    after_origin: str

    def to_dict(self) -> dict[str, object]:
        return {
            "after": iso(self.after),
            "until": iso(self.until),
            "last": self.last,
            "start_id": self.start_id,
            "end_id": self.end_id,
            "after_origin": self.after_origin,
        }


ActiveSince = Callable[[], dt.datetime]
"""Answers ``--after auto``: when the engine unit last became active (the CLI passes systemd's answer)."""


def resolve_window(
    after: str | dt.datetime | None,
    until: str | dt.datetime | None = None,
    last: int | None = None,
    *,
    auto: ActiveSince | None = None,
    auto_origin: str = "auto (the unit's last start)",
    require_after: bool = False,
) -> Window:
    """The one route from a cutover to stream IDs: ``after``/``until`` as ISO text or aware datetimes, ``last`` N.

    ``after="auto"`` is answered by calling ``auto`` (telemetry does not ask systemd itself), described
    in the window as ``auto_origin``; without ``auto`` it is an error.
    """
    origin = "none (whole retained stream)"
    after_dt: dt.datetime | None = None
    if isinstance(after, dt.datetime):
        after_dt, origin = after, "caller"
    elif after is None or not after.strip():
        if require_after:
            raise InputError("--after is required: give the cutover as ISO 8601 (e.g. 2026-01-10T05:40:00Z) or 'auto'")
    elif after.strip().lower() == "auto":
        if auto is None:
            raise InputError("--after auto needs the engine unit's start time, which this caller cannot ask for; "
                             "give the cutover as ISO 8601")
        after_dt, origin = auto(), auto_origin
    else:
        after_dt, origin = parse_utc(after), "--after"
    until_dt = parse_utc(until) if isinstance(until, str) and until else (
        until if isinstance(until, dt.datetime) else None)
    if after_dt is not None and until_dt is not None and until_dt <= after_dt:
        raise InputError(f"until {iso(until_dt)} is not after the cutover {iso(after_dt)}")
    start_id = stream_id_for(after_dt) if after_dt is not None else MIN_ID
    end_id = end_id_for(until_dt) if until_dt is not None else MAX_ID
    return Window(after_dt, until_dt, last, start_id, end_id, origin)


def window_between(after: dt.datetime | None, until: dt.datetime | None = None, last: int | None = None) -> Window:
    """A window from datetimes already known. Kept for incident.py and the canary tests; remove when they
    call :func:`resolve_window`."""
    return resolve_window(after, until, last)
