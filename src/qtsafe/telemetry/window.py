"""The window a command judges: cutover (``--after``), ``--until`` and ``--last`` as stream IDs."""

from __future__ import annotations

import dataclasses
import datetime as dt

from qtsafe.config import Settings
from qtsafe.errors import InputError
from qtsafe.telemetry.sources import MAX_ID, MIN_ID
from qtsafe.timeutil import iso, parse_utc, stream_id_for


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


def unit_active_since(settings: Settings) -> dt.datetime:
    """When the engine unit last entered 'active' (systemctl ActiveEnterTimestamp), in UTC."""
    from qtsafe.canary.systemd import Systemd

    return Systemd(settings).active_since()


def resolve_window(
    settings: Settings,
    after: str | None,
    until: str | None = None,
    last: int | None = None,
    *,
    require_after: bool = False,
) -> Window:
    """Turn the operator's --after/--until/--last into stream IDs. ``auto`` asks systemd."""
    origin = "none (whole retained stream)"
    after_dt: dt.datetime | None = None
    if after is None or not after.strip():
        if require_after:
            raise InputError("--after is required: give the cutover as ISO 8601 (e.g. 2026-01-10T05:40:00Z) or 'auto'")
    elif after.strip().lower() == "auto":
        after_dt = unit_active_since(settings)
        origin = f"auto ({settings.unit} ActiveEnterTimestamp)"
    else:
        after_dt = parse_utc(after)
        origin = "--after"
    until_dt = parse_utc(until) if until else None
    return dataclasses.replace(window_between(after_dt, until_dt, last), after_origin=origin)


def window_between(after: dt.datetime | None, until: dt.datetime | None = None, last: int | None = None) -> Window:
    """A window from datetimes already known (library callers such as ``canary activate``)."""
    if after is not None and until is not None and until <= after:
        raise InputError(f"until {iso(until)} is not after the cutover {iso(after)}")
    start_id = stream_id_for(after) if after is not None else MIN_ID
    end_id = str(int(until.timestamp() * 1000)) if until is not None else MAX_ID
    origin = "caller" if after is not None else "none (whole retained stream)"
    return Window(after, until, last, start_id, end_id, origin)
