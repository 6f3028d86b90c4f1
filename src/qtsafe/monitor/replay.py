"""Replay: the monitor's rules over recorded telemetry at full speed, saying when they would have fired."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from qtsafe.config import Settings
from qtsafe.errors import InputError
from qtsafe.monitor.state import Watch
from qtsafe.status import Status
from qtsafe.telemetry.ids import parse_stream_id
from qtsafe.telemetry.parse import TelemetryBuilder
from qtsafe.telemetry.sources import Source
from qtsafe.timeutil import iso


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    status: Status
    summary: str
    model: str
    from_id: str
    to_id: str
    checks: int
    events: int
    firings: tuple[dict[str, Any], ...]
    outcomes: dict[str, Any] | None = None  # the watch's outcome figures at the end of the range

    def to_dict(self) -> dict[str, Any]:
        return {"command": "monitor --replay", "status": self.status.value, "summary": self.summary,
                "model": self.model, "from_id": self.from_id, "to_id": self.to_id, "checks": self.checks,
                "events": self.events, "firings": list(self.firings),
                "outcomes": self.outcomes}


def run_replay(settings: Settings, source: Source, from_id: str, to_id: str, *, model: str,
               interval: float | None = None) -> ReplayResult:
    """The monitor's rules over recorded telemetry at full speed, in ticks of stream time. Changes nothing.

    Ticks start at the first entry in the range. A silent stretch is judged only until the stall rule
    has had its chance to fire, then skipped in one step, so a range with long gaps costs no more than
    one with none.
    """
    seconds = settings.monitor.interval if interval is None else interval
    first_key, last_key = parse_stream_id(from_id), parse_stream_id(to_id)
    if last_key < first_key:
        raise InputError(f"--replay: {to_id} is before {from_id}")
    step = int(seconds * 1000)
    stall_ms = int(settings.monitor.stall_limit * 1000)
    watch: Watch | None = None
    boundary = 0
    firings: list[dict[str, Any]] = []
    pending: list[Any] = []

    def close_tick(at_ms: int) -> None:
        assert watch is not None
        builder = TelemetryBuilder()
        if pending:
            builder.feed(list(pending))
            pending.clear()
        watch.fold(builder.build())
        watch.checks += 1
        at = dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC)
        violations, _, _ = watch.judge(at)
        if violations:
            firings.append({"check": watch.checks, "at": iso(at), "events": watch.events, "violations": violations})

    for page in source.pages(from_id, to_id):
        for entry in page:
            ms = int(entry[0].split(b"-", 1)[0])
            if watch is None:
                # The alpha budget of one watch's checks; a longer range is judged as one watch after another.
                looks = math.ceil((settings.monitor.duration + settings.monitor.end_grace) / seconds)
                watch = Watch(settings, f"replay-{from_id}", model, dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC),
                              looks=looks, repeat_schedule=True)
                boundary = ms + step
            silent_until = (watch.last_event_ms or ms) + stall_ms + step
            while ms > boundary and boundary <= silent_until:
                close_tick(boundary)
                boundary += step
            if ms > boundary:  # a long silence, already judged: skip to the tick holding this entry
                boundary += ((ms - boundary) // step + 1) * step
            pending.append(entry)
    if watch is None:
        return ReplayResult(Status.WAIT, f"WAIT: no entries between {from_id} and {to_id}; nothing to replay",
                            model, from_id, to_id, 0, 0, ())
    close_tick(boundary)
    canary = watch.models.get(model)
    needed = settings.thresholds.min_events_canary
    if firings:
        first = firings[0]
        summary = (f"FAIL: the monitor's rules would have fired at {first['at']} (check {first['check']}, "
                   f"{first['events']:,} events): {first['violations'][0]}; {len(firings)} of {watch.checks} "
                   "checks had a violation")
        status = Status.FAIL
    elif canary is None or canary.n < needed:
        summary = (f"WAIT: no rule fired over {watch.checks} checks, but only {canary.n if canary else 0} valid "
                   f"{model} votes in the range (need {needed}): too little evidence to call it clean")
        status = Status.WAIT
    else:
        summary = f"PASS: no rule would have fired over {watch.checks} checks and {watch.events:,} events"
        status = Status.PASS
    return ReplayResult(status, summary, model, from_id, to_id, watch.checks, watch.events, tuple(firings),
                        watch.outcomes_report())
