"""Is the stream the monitor reads still the one it was reading? Existence, type and ID continuity, every check.

A read that finds nothing new looks the same whether the producer is quiet, the key was deleted or Redis
came back empty: the monitor would log ``OK (+0)`` until the stall rule fired, or through a short watch's
end. So before each read the monitor asks Redis three things, as the gate does before a window:

* the key exists and is a stream (``TYPE``): a missing key or another type is lost telemetry;
* the stream has not gone back (``XINFO STREAM``): its ``last-generated-id`` is not older than the entry
  last read, and its ``entries-added`` counter (Redis 7+) has not gone down since the last check;
* the entry last read is still there (``XRANGE id id``): a stream that lost it was recreated, restored
  from an older copy or trimmed past entries the monitor never read.

Each is hard evidence, judged at once (a violation, so the canary is rolled back); Redis not answering is
an error check counted against the error budget as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import redis

from qtsafe.errors import TelemetryError
from qtsafe.telemetry.ids import parse_stream_id
from qtsafe.telemetry.sources import RedisStreamSource, Source, _describe_error


@dataclasses.dataclass(frozen=True)
class StreamFacts:
    """What Redis says about the stream at one check (None where the server does not say)."""

    kind: str
    length: int | None = None
    first_id: str | None = None
    last_generated_id: str | None = None
    entries_added: int | None = None
    last_read_present: bool | None = None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, (list, tuple)):
        return _text(value[0]) if value else None
    return str(value)


def _pairs(raw: Any) -> dict[str, Any]:
    items = list(raw.items()) if isinstance(raw, dict) else [(raw[i], raw[i + 1]) for i in range(0, len(raw) - 1, 2)]
    return {(_text(k) or ""): v for k, v in items}


def stream_facts(source: Source, last_read: str | None) -> StreamFacts | None:
    """Ask Redis about the stream; None for a source with no key to lose (a JSONL export).

    Raises TelemetryError when Redis does not answer (an error check, never a pass).
    """
    if not isinstance(source, RedisStreamSource):
        return None

    def call(*args: Any) -> Any:
        try:
            return source.client.execute_command(*args)
        except (redis.RedisError, OSError) as exc:
            raise TelemetryError(f"Redis at {source.url} (stream {source.key}): {_describe_error(exc)}") from exc

    kind = _text(call("TYPE", source.key)) or "none"
    if kind != "stream":
        return StreamFacts(kind=kind)
    info = _pairs(call("XINFO", "STREAM", source.key))
    added = info.get("entries-added")
    present = None
    if last_read is not None:
        present = bool(call("XRANGE", source.key, last_read, last_read, "COUNT", 1))
    return StreamFacts(kind="stream", length=int(info.get("length") or 0), first_id=_text(info.get("first-entry")),
                       last_generated_id=_text(info.get("last-generated-id")),
                       entries_added=int(added) if added is not None else None, last_read_present=present)


def continuity_violations(facts: StreamFacts | None, key: str, last_read: str | None,
                          previous_added: int | None) -> list[str]:
    """Why the stream cannot be the one the watch was reading (empty: it can)."""
    if facts is None:
        return []
    if facts.kind == "none":
        return [f"telemetry lost: stream {key} does not exist any more (deleted, or Redis restarted empty)"]
    if facts.kind != "stream":
        return [f"telemetry lost: key {key} is a {facts.kind}, not a stream"]
    lost: list[str] = []
    if last_read is not None and facts.last_generated_id and \
            parse_stream_id(facts.last_generated_id) < parse_stream_id(last_read):
        lost.append(f"telemetry lost: stream {key} went backwards: its last ID is {facts.last_generated_id}, "
                    f"older than {last_read} already read (recreated or restored from an older copy)")
    if previous_added is not None and facts.entries_added is not None and facts.entries_added < previous_added:
        lost.append(f"telemetry lost: stream {key} was recreated: it counts {facts.entries_added} entries ever "
                    f"added, fewer than the {previous_added} at the previous check")
    if last_read is not None and facts.last_read_present is False and not lost:
        lost.append(f"telemetry lost: the entry last read ({last_read}) is no longer in stream {key} (it now "
                    f"starts at {facts.first_id or 'nothing'}): recreated, restored, or trimmed past unread entries")
    return lost
