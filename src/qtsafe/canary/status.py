"""``canary status``: what is active, since when, whether a live monitor watches it, and how to repair it if not."""

from __future__ import annotations

import dataclasses
from typing import Any

from qtsafe.canary import journal
from qtsafe.canary import state as st
from qtsafe.canary.promote import _monitor_cleared
from qtsafe.canary.steps import _read_bytes, _sha256_bytes, rollback_command
from qtsafe.canary.systemd import Systemd
from qtsafe.canary.weights import parse_weights_json
from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import CanaryStateError, ConfigError, InputError, QtsafeError, StateError
from qtsafe.results import Result
from qtsafe.status import Status
from qtsafe.timeutil import parse_utc


@dataclasses.dataclass(frozen=True)
class StatusResult(Result):
    """Outcome of ``canary status``: PASS (none / monitored), WAIT (unmonitored, stale), FAIL (inconsistent)."""

    unit: str
    active: bool
    phase: str | None
    canary: dict[str, Any] | None
    unit_state: str | None
    dropin_present: bool
    baseline_weights: dict[str, float] | None
    live_weights: dict[str, float] | None
    heartbeat: dict[str, Any] | None
    heartbeat_age_seconds: float | None
    problems: tuple[str, ...]
    repair: str | None
    journal_tail: tuple[dict[str, Any], ...]


def canary_status(settings: Settings, *, systemd: Systemd | None = None, journal_lines: int = 5) -> StatusResult:
    """What is active, since when, weights, heartbeat and the last journal records; never changes anything."""
    try:
        check_unit_name(settings.unit)
    except ConfigError as exc:
        return StatusResult(status=Status.FAIL, summary=f"CANARY STATUS REFUSED: {exc}", unit=settings.unit,
                            active=False, phase=None, canary=None, unit_state=None, dropin_present=False,
                            baseline_weights=None, live_weights=None, heartbeat=None, heartbeat_age_seconds=None,
                            problems=(str(exc),), repair="set unit to the engine's systemd unit name "
                            "(qtsafe.toml, QTSAFE_UNIT or --unit)", journal_tail=())
    systemd = systemd or Systemd(settings)
    problems: list[str] = []
    repair = f"run '{rollback_command(settings)}' to restore the baseline"
    state_unreadable = False
    try:
        state = st.read_state(settings)
    except StateError as exc:
        state = None
        state_unreadable = isinstance(exc, CanaryStateError)
        problems.append(str(exc))
    dropin = st.dropin_path(settings).exists()
    try:
        records = journal.read_records(settings)
    except StateError as exc:
        records = []
        problems.append(f"journal unreadable: {exc}")
    unit_state: str | None = None
    live: dict[str, float] | None = None
    env: dict[str, str] = {}
    try:
        unit_state = systemd.is_active()
        env = systemd.environment()
        if settings.weights_variable in env:
            live = parse_weights_json(env[settings.weights_variable], where=settings.weights_variable)
    except QtsafeError as exc:
        problems.append(f"cannot read the live unit: {exc}")
    baseline = _read_baseline_file(settings)
    heartbeat, age, hb_problem = st.read_heartbeat(settings)
    tail = tuple(records[-journal_lines:]) if journal_lines else ()
    canary: dict[str, Any] | None = None
    phase = state.phase if state else None

    def result(status: Status, summary: str, fix: str | None) -> StatusResult:
        return StatusResult(
            status=status, summary=summary, unit=settings.unit, active=phase == st.PHASE_ACTIVE, phase=phase,
            canary=canary, unit_state=unit_state, dropin_present=dropin, baseline_weights=baseline,
            live_weights=live, heartbeat=heartbeat, heartbeat_age_seconds=None if age is None else round(age, 1),
            problems=tuple(problems), repair=fix, journal_tail=tail)

    if state is not None:
        recorded = state.to_dict()
        canary = {k: recorded.get(k) for k in ("canary_id", "model", "mode", "share", "env_key", "activated_at",
                                               "started_at", "step", "stages", "canary_weights", "last_error")}
    if state_unreadable and not dropin:
        return result(Status.FAIL, f"CANARY STATE INCONSISTENT: {problems[0]}", repair)
    if state is None:
        if dropin:
            problems.insert(0, f"{st.dropin_path(settings)} exists but no canary is recorded")
            return result(Status.FAIL, "CANARY STATE INCONSISTENT: a canary drop-in with no state or journal record",
                          repair)
        if env.get(st.MARKER_MODEL):
            problems.insert(0, f"the unit's environment carries {st.MARKER_MODEL}={env[st.MARKER_MODEL]} "
                            "but no drop-in or state exists (daemon-reload pending?)")
            return result(Status.FAIL, "CANARY STATE INCONSISTENT: canary markers in the environment", repair)
        if problems:
            # No canary on record, but the live unit could not be read: that is not a clean bill of health.
            return result(Status.WAIT, f"NO CANARY RECORDED, but {problems[0]}",
                          "check systemctl and the unit name (qtsafe doctor)")
        return result(Status.PASS, f"NO CANARY: {settings.unit} runs its baseline", None)
    if phase != st.PHASE_ACTIVE:
        problems.insert(0, f"a canary was interrupted while {phase} (last step {state.step}, "
                        f"pid {state.pid}, since {state.started_at})"
                        + (f": {state.last_error}" if state.last_error else ""))
        return result(Status.FAIL, f"CANARY INTERRUPTED: {state.model} {phase} at {state.step}", repair)
    # Active: it must be consistent with the drop-in, the journal and the live unit.
    if not any(r.get("canary_id") == state.canary_id and r.get("action") == "canary_activated"
               for r in records):
        problems.append(f"no canary_activated journal record for {state.canary_id}")
    if state.mode == "dropin":
        data = _read_bytes(st.dropin_path(settings))
        if data is None:
            problems.append(f"{st.dropin_path(settings)} is missing (removed by hand?)")
        elif state.dropin_sha256 and _sha256_bytes(data) != state.dropin_sha256:
            problems.append(f"{st.dropin_path(settings)} differs from what qtsafe wrote (edited by hand?)")
        if env and env.get(st.MARKER_MODEL) != state.model:
            problems.append(f"the unit's environment has {st.MARKER_MODEL}={env.get(st.MARKER_MODEL)!r}, "
                            f"expected {state.model!r}")
    if unit_state is not None and unit_state != "active":
        problems.append(f"{settings.unit} is {unit_state}")
    if problems:
        return result(Status.FAIL, f"CANARY STATE INCONSISTENT: {problems[0]}", repair)
    last = next((r for r in reversed(records) if r.get("canary_id") in (None, state.canary_id)
                 and r.get("action", "").startswith("monitoring_")), None)
    what = f"{state.model} at {float(state.share or 0):.0%}" if state.mode == "dropin" \
        else f"{state.env_key} for {state.model}"
    if last is not None and last.get("action") == "monitoring_completed" and \
            _monitor_cleared(records, state, settings.monitor.duration) is None:
        return result(Status.WAIT, f"CANARY ACTIVE: {what} since {state.activated_at}; monitoring completed "
                      "with no violation, awaiting promote or rollback",
                      "promote with 'qtsafe canary promote --to <stage> --reason ...' or roll back")
    hb_model = (heartbeat or {}).get("canary_model")
    max_age = settings.monitor.heartbeat_max_age
    if last is not None and last.get("action") == "monitoring_stopped":
        problems.append(f"the monitor stopped at {last.get('timestamp')} ({last.get('reason')})")
    elif hb_problem or age is None:
        problems.append(hb_problem or "monitor heartbeat has no readable age")
    elif age > max_age:
        problems.append(f"monitor heartbeat is stale: {age:.0f}s old (limit {max_age:g}s)")
    elif hb_model not in (None, state.model):
        problems.append(f"monitor heartbeat is for {hb_model!r}, not {state.model!r}")
    elif _predates(str((heartbeat or {}).get("timestamp")), state.activated_at):
        problems.append("monitor heartbeat predates this canary")
    if problems:
        return result(Status.WAIT, f"CANARY UNMONITORED: {what} since {state.activated_at}; {problems[0]}",
                      "start the monitor ('qtsafe monitor') or roll back")
    return result(Status.PASS, f"CANARY MONITORED: {what} since {state.activated_at}, heartbeat "
                  f"{age:.0f}s ago", None)


def _predates(stamp: str, activated_at: Any) -> bool:
    try:
        return bool(activated_at) and parse_utc(stamp) < parse_utc(str(activated_at))
    except QtsafeError:
        return True


def _read_baseline_file(settings: Settings) -> dict[str, float] | None:
    try:
        data = st.baseline_weights_path(settings).read_text(encoding="utf-8")
        return parse_weights_json(data, where=str(st.baseline_weights_path(settings)))
    except (OSError, InputError):
        return None

