"""The watchdog: roll back an active canary whose monitor has stopped beating (run by a systemd timer)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from qtsafe.canary import state as canary_state
from qtsafe.config import Settings
from qtsafe.monitor.live import RollbackFn, canary_activated_at, default_rollback
from qtsafe.status import Status
from qtsafe.timeutil import parse_utc, utc_now


@dataclasses.dataclass(frozen=True)
class WatchdogResult:
    status: Status
    summary: str
    canary_id: str | None
    heartbeat_age: float | None
    rollback: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"command": "monitor --watchdog", "status": self.status.value, "summary": self.summary,
                "canary_id": self.canary_id, "heartbeat_age_seconds": self.heartbeat_age, "rollback": self.rollback}


def run_watchdog(settings: Settings, *, rollback_fn: RollbackFn | None = None,
                 now: dt.datetime | None = None) -> WatchdogResult:
    """Roll back an active canary whose monitor has stopped beating. The analyser dying fails closed."""
    roll_back: RollbackFn = rollback_fn or default_rollback()
    now = now or utc_now()
    limit = settings.monitor.heartbeat_max_age
    canary = canary_state.active_canary(settings)
    if canary is None:
        pending = canary_state.read_state(settings)
        if pending is None:
            return WatchdogResult(Status.PASS, "OK: no active canary; nothing to watch", None, None, None)
        # A canary stuck half-applied or half-rolled-back (its process died): nothing watches it. Repair it.
        began = pending.started_at or pending.activated_at
        stuck_for = (now - parse_utc(str(began))).total_seconds() if began else limit + 1
        if stuck_for <= limit:
            return WatchdogResult(Status.WAIT, f"WAIT: a canary is {pending.phase} since {began}; "
                                               "checking again next run", pending.canary_id, None, None)
        why = f"a canary was left {pending.phase} at step {pending.step} since {began}"
        data, verified, summary = _watchdog_rollback(settings, roll_back, why)
        return WatchdogResult(Status.FAIL, f"FAIL: {why}; " + ("repaired by rollback" if verified else
                                                               f"ROLLBACK FAILED - {summary}"),
                              pending.canary_id, None, data)
    beat, age, problem = canary_state.read_heartbeat(settings)
    last = _last_monitor_record(settings, canary)
    if last is not None and last.get("action") == "monitoring_completed" and last.get("result") == "safe":
        return WatchdogResult(Status.WAIT, f"WAIT: canary {canary.model} finished a clean watch at "
                                           f"{last.get('timestamp')}; awaiting promote or rollback",
                              canary.canary_id, age, None)
    if beat is not None and age is not None and beat.get("canary_id") == canary.canary_id and age <= limit:
        return WatchdogResult(Status.PASS, f"OK: monitor of canary {canary.model} alive (heartbeat {age:.0f}s old)",
                              canary.canary_id, age, None)
    since = (now - canary_activated_at(canary)).total_seconds()
    if beat is None and since <= limit:
        return WatchdogResult(Status.WAIT, f"WAIT: canary {canary.model} activated {since:.0f}s ago and no monitor "
                                           f"heartbeat yet (grace {limit:.0f}s): start 'qtsafe monitor'",
                              canary.canary_id, None, None)
    if beat is not None and beat.get("canary_id") != canary.canary_id:
        why = f"the heartbeat belongs to another canary ({beat.get('canary_id')})"
    elif age is not None:
        why = f"monitor heartbeat is {age:.0f}s old (limit {limit:.0f}s)"
    else:
        why = problem or "no monitor heartbeat"
    data, verified, rb_summary = _watchdog_rollback(settings, roll_back, why)
    summary = (f"FAIL: monitor of canary {canary.model} is dead ({why}); canary rolled back" if verified else
               f"FAIL: monitor of canary {canary.model} is dead ({why}) and the ROLLBACK FAILED - {rb_summary}")
    return WatchdogResult(Status.FAIL, summary, canary.canary_id, age, data)


def _watchdog_rollback(settings: Settings, roll_back: RollbackFn, why: str) -> tuple[dict[str, Any], bool, str]:
    """Roll back for the watchdog: (the rollback's result as a dict, verified?, its summary)."""
    outcome = roll_back(settings, trigger="qsc_monitor_watchdog", violations=[why], reason=f"watchdog: {why}")
    data = outcome.to_dict() if hasattr(outcome, "to_dict") else dict(outcome)
    return data, getattr(outcome, "status", None) is Status.PASS, str(getattr(outcome, "summary", ""))


def _last_monitor_record(settings: Settings, canary: canary_state.ActiveCanary) -> dict[str, Any] | None:
    from qtsafe.canary.journal import read_records

    for record in reversed(read_records(settings)):
        if record.get("canary_id") == canary.canary_id and str(record.get("action", "")).startswith("monitoring_"):
            stage = record.get("stage")
            return record if stage is None or float(stage) == canary.stage else None
    return None
