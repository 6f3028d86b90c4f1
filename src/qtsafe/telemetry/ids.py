"""Stream IDs (``<unix_ms>-<seq>``): the one home for parsing, building, stepping and the XRANGE bounds."""

from __future__ import annotations

import datetime as dt
import re

from qtsafe.errors import InputError

MAX_ID = "+"
MIN_ID = "-"
# The largest sequence number Redis allows within one millisecond (2**64 - 1).
MAX_SEQ = 18446744073709551615
_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")


def stream_id_for(moment: dt.datetime) -> str:
    """The first stream ID at or after ``moment``: ``<unix_ms>-0``."""
    millis = int(moment.astimezone(dt.UTC).timestamp() * 1000)
    if millis < 0:
        raise InputError(f"timestamp before 1970 cannot be a stream ID: {moment.isoformat()}")
    return f"{millis}-0"


def end_id_for(moment: dt.datetime) -> str:
    """The inclusive XRANGE end for entries up to ``moment``: ``<unix_ms>`` (Redis reads it as the last seq)."""
    return str(int(moment.timestamp() * 1000))


def last_id_of_ms(millis: int) -> str:
    """The last possible stream ID within millisecond ``millis``."""
    return f"{millis}-{MAX_SEQ}"


def parse_stream_id(text: str) -> tuple[int, int]:
    """Split ``<ms>-<seq>`` (or ``<ms>``) into integers; raise InputError on anything else."""
    match = _STREAM_ID.match(text.strip())
    if not match:
        raise InputError(f"not a stream ID: {text!r} (expected <unix_ms>-<seq>)")
    return int(match.group(1)), int(match.group(2) or 0)


def stream_id_time(stream_id: str) -> dt.datetime:
    """The UTC time encoded in a stream ID."""
    millis, _ = parse_stream_id(stream_id)
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)


def next_id(entry_id: bytes | str) -> str:
    """The smallest stream ID after ``entry_id``: where the next page begins."""
    ms, seq = parse_stream_id(entry_id.decode("ascii") if isinstance(entry_id, bytes) else entry_id)
    return f"{ms}-{seq + 1}"


def prev_id(entry_id: str) -> str | None:
    """The largest stream ID before ``entry_id``, or None before ``0-0``."""
    ms, seq = parse_stream_id(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    if ms > 0:
        return last_id_of_ms(ms - 1)
    return None
