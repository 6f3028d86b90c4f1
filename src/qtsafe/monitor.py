"""The canary watch: every interval for the monitor's duration, judge what arrived since the last tick.

Any violation rolls the canary back in-process (verified), journals and exits 2. Losing telemetry is a
violation too: no new trade.intent for longer than the stall limit, or Redis errors on too many ticks
in a row or in all. A run that completes with no violation journals ``monitoring_completed`` and exits
0; a run stopped by a signal journals ``monitoring_stopped`` and exits 3 (the canary stays active,
unmonitored, and ``canary status`` says so). No path ends in "safe" except completion, and a watch
completes only on a check that read the stream: past the end it keeps checking for ``monitor.end_grace``,
then fails closed. Before each read the stream's existence, type and continuity are checked
(:mod:`qtsafe.monitor_stream`). A monitor that cannot write its own records rolls the canary back, or
failing that journals ``monitoring_stopped`` and removes its heartbeat, and exits 2.

State is saved after every tick (``data/qsc_monitor_state.json``), so a monitor restarted after a
crash resumes the same window, counted from activation, with its check history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from qtsafe import __version__
from qtsafe.canary import state as canary_state
from qtsafe.canary.journal import append_record
from qtsafe.checks.ensemble import judge_ensemble
from qtsafe.checks.quality import FAIL, judge_defects, judge_stats
from qtsafe.config import Settings
from qtsafe.errors import InputError, QtsafeError, StateError, TelemetryError
from qtsafe.fsio import append_jsonl, atomic_write_json
from qtsafe.monitor_stream import continuity_violations, stream_facts
from qtsafe.reports import render, write_new_report
from qtsafe.rolling import RollingEnsemble, RollingModel
from qtsafe.status import Status
from qtsafe.telemetry.parse import Telemetry, TelemetryBuilder
from qtsafe.telemetry.sources import MAX_ID, Source, _next_id
from qtsafe.timeutil import file_stamp, format_duration, iso, parse_stream_id, parse_utc, stream_id_for, utc_now


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock UTC time; sleeps end early when ``wake`` is set (a signal asked the monitor to stop)."""

    def __init__(self) -> None:
        self.wake = threading.Event()

    def now(self) -> dt.datetime:
        return utc_now()

    def sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)


@dataclasses.dataclass(frozen=True)
class Tick:
    """One check: what arrived, what was judged, and what (if anything) was violated."""

    index: int
    at: dt.datetime
    new_events: int
    total_events: int
    state: str  # ok | inconclusive | error | violation
    violations: tuple[str, ...]
    models: dict[str, dict[str, Any]]
    error: str | None = None
    last_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "at": iso(self.at), "new_events": self.new_events,
                "total_events": self.total_events, "state": self.state, "violations": list(self.violations),
                "models": self.models, "error": self.error, "last_id": self.last_id}


def monitor_state_path(settings: Settings) -> Path:
    return settings.data_dir / "qsc_monitor_state.json"


def monitor_timeline_path(settings: Settings) -> Path:
    return settings.data_dir / "qsc_monitor_timeline.jsonl"


def _load_timeline(settings: Settings, canary_id: str, stage: float | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        lines = monitor_timeline_path(settings).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return rows
    except OSError as exc:
        raise StateError(f"monitor timeline unreadable: {exc}") from exc
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn last line from a crash: the state file is the authority on checks
        if row.get("canary_id") == canary_id and row.get("stage") == stage:
            rows.append(row["row"])
    return rows[-2000:]


def iso_precise(moment: dt.datetime) -> str:
    """ISO 8601 UTC with microseconds (tick times must round-trip exactly through the saved state)."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _json_float(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


class Watch:
    """Rolling state for one canary, fed from a source; pure apart from the reads it asks the source for."""

    def __init__(self, settings: Settings, canary_id: str, model: str, activated_at: dt.datetime,
                 saved: dict[str, Any] | None = None, stage: float | None = None) -> None:
        self.settings = settings
        self.canary_id = canary_id
        self.stage = stage
        self.model = model
        self.activated_at = activated_at
        window = settings.monitor.window_events
        # Resume only the same canary at the same stage: a promotion starts a fresh window.
        same = saved and saved.get("canary_id") == canary_id and saved.get("stage") == stage
        saved = saved if same else None
        self.resumed = saved is not None
        self.last_id: str | None = saved["last_id"] if saved else None
        self.checks: int = saved["checks"] if saved else 0
        self.errors_total: int = saved["errors_total"] if saved else 0
        self.errors_consecutive: int = saved["errors_consecutive"] if saved else 0
        self.events: int = saved["events"] if saved else 0
        self.last_event_ms: int | None = saved["last_event_ms"] if saved else None
        self.models: dict[str, RollingModel] = (
            {name: RollingModel.from_state(data) for name, data in saved["models"].items()} if saved else {})
        self.ensemble = RollingEnsemble.from_state(saved["ensemble"]) if saved else RollingEnsemble(window)
        # The timeline lives in its own append-only file (one line a check), so saving the state every check
        # costs the same at check 700 as at check 1.
        self.timeline: list[dict[str, Any]] = list(saved.get("timeline", [])) if saved else []
        self.last_tick_at: str | None = saved.get("last_tick_at") if saved else None
        self.max_gap: float = float(saved.get("max_gap", 0.0)) if saved else 0.0
        self.started_at: str = saved["started_at"] if saved else iso(utc_now()) or ""
        # The stream's entries-added counter at the last check: a counter that goes down is a recreated stream.
        self.stream_added: int | None = saved.get("stream_added") if saved else None

    # -- reading -------------------------------------------------------------------------------
    def read_new(self, source: Source) -> Telemetry:
        start = _next_id(self.last_id) if self.last_id else stream_id_for(self.activated_at)
        builder = TelemetryBuilder()
        for page in source.pages(start, MAX_ID):
            builder.feed(page)
        return builder.build()

    def fold(self, telemetry: Telemetry) -> None:
        """Add a batch of new telemetry to the rolling state (cost grows with the batch, not the stream)."""
        offset = self.events
        for name, columns in telemetry.models.items():
            rolling = self.models.get(name)
            if rolling is None:
                rolling = self.models[name] = RollingModel(name, self.settings.monitor.window_events)
            rolling.update(columns, telemetry.event_ms, offset, telemetry.evaluated)
        self.ensemble.update(telemetry.votes)
        self.events += telemetry.evaluated
        if telemetry.evaluated:
            self.last_event_ms = int(telemetry.event_ms[-1])
        if telemetry.last_id:
            self.last_id = telemetry.last_id

    # -- judging -------------------------------------------------------------------------------
    def judge(self, now: dt.datetime) -> tuple[list[str], bool, dict[str, dict[str, Any]]]:
        """(violations, inconclusive, per-model figures) for the state as it stands."""
        t = self.settings.thresholds
        m = self.settings.monitor
        violations: list[str] = []
        inconclusive = False
        figures: dict[str, dict[str, Any]] = {}
        for name, rolling in sorted(self.models.items()):
            findings = list(judge_defects(rolling.defects(), t, subject=name))
            recent = rolling.recent(t)
            state = "ok"
            if recent.n >= m.window_events:
                findings += judge_stats(recent, t, subject=name, scope=f"rolling window of {recent.n} events",
                                        min_events=None)
            else:
                state = "inconclusive"
            if rolling.n >= t.min_events_canary:
                findings += judge_stats(rolling.cumulative(), t, subject=name, scope="time since activation",
                                        min_events=None)
            failing = [f.message for f in findings if f.severity == FAIL]
            if failing:
                state = "violation"
            violations += failing
            inconclusive = inconclusive or state == "inconclusive"
            figures[name] = {"n": rolling.n, "window": recent.n, "std": _json_float(recent.conf_std),
                             "spread": _json_float(recent.spread), "top": recent.top_action if recent.n else None,
                             "state": state}
        canary = self.models.get(self.model)
        if self.events >= m.window_events and (
            canary is None or self.events - 1 - canary.last_seen_event >= m.window_events
        ):
            violations.append(f"{self.model}: the canary is missing from the last {m.window_events} events")
        ensemble = self.ensemble.figures()
        if ensemble.events >= m.window_events:
            violations += [f.message for f in judge_ensemble(ensemble, t, severity=FAIL)]
        else:
            inconclusive = True
        last = (dt.datetime.fromtimestamp(self.last_event_ms / 1000, tz=dt.UTC) if self.last_event_ms is not None
                else self.activated_at)
        silent = (now - last).total_seconds()
        if silent > m.stall_limit:
            violations.append(f"telemetry stalled: no new trade.intent for {silent / 60:.1f} min "
                              f"(limit {format_duration(m.stall_limit)})")
        violations += self.budget_violations()
        return violations, inconclusive, figures

    def budget_violations(self) -> list[str]:
        """Telemetry lost: errors on too many checks in a row, or in all (an every-other-check failure)."""
        m = self.settings.monitor
        if self.errors_consecutive >= m.max_consecutive_errors:
            return [f"telemetry lost: Redis errors on {self.errors_consecutive} consecutive checks "
                    f"(limit {m.max_consecutive_errors})"]
        if self.errors_total >= m.max_total_errors:
            return [f"telemetry unreliable: Redis errors on {self.errors_total} checks in all "
                    f"(limit {m.max_total_errors})"]
        return []

    def tick(self, source: Source, now: dt.datetime) -> Tick:
        """Read what is new, fold it in, judge. A Redis error is counted, never treated as a pass."""
        self.checks += 1
        # The longest time the canary went unwatched (a late start, or a monitor down between checks).
        previous = parse_utc(self.last_tick_at) if self.last_tick_at else self.activated_at
        self.max_gap = max(self.max_gap, (now - previous).total_seconds())
        self.last_tick_at = iso_precise(now)
        error = None
        new_events = 0
        lost: list[str] = []
        try:
            facts = stream_facts(source, self.last_id)
            lost = continuity_violations(facts, getattr(source, "key", "?"), self.last_id, self.stream_added)
            if facts is not None and facts.entries_added is not None:
                self.stream_added = facts.entries_added
            # A stream that is not the one we were reading is not read: its entries are not the canary's window.
            telemetry = self.read_new(source) if not lost else TelemetryBuilder().build()
            self.fold(telemetry)
        except (TelemetryError, InputError) as exc:
            self.errors_total += 1
            self.errors_consecutive += 1
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a check that cannot run is an error check, never a pass
            self.errors_total += 1
            self.errors_consecutive += 1
            error = f"check failed: {type(exc).__name__}: {exc}"
        else:
            self.errors_consecutive = 0
            new_events = telemetry.evaluated
        try:
            violations, inconclusive, figures = self.judge(now)
        except Exception as exc:  # noqa: BLE001 - a check that cannot be judged counts as an error check
            if error is None:
                self.errors_total += 1
                self.errors_consecutive += 1
            error = f"check failed: {type(exc).__name__}: {exc}"
            violations, inconclusive, figures = self.budget_violations(), True, {}
        violations = lost + violations
        state = "violation" if violations else ("error" if error else ("inconclusive" if inconclusive else "ok"))
        tick = Tick(self.checks, now, new_events, self.events, state, tuple(violations), figures, error, self.last_id)
        del self.timeline[:-1999]  # bounded: the report samples it; a replay may run for weeks of checks
        self.timeline.append({"index": tick.index, "at": iso(now), "new": new_events, "events": self.events,
                              "state": state, "models": {k: {"n": v["n"], "std": v["std"], "spread": v["spread"]}
                                                         for k, v in figures.items()}})
        return tick

    def to_state(self) -> dict[str, Any]:
        return {"canary_id": self.canary_id, "stage": self.stage, "model": self.model,
                "activated_at": iso(self.activated_at),
                "started_at": self.started_at, "last_id": self.last_id, "checks": self.checks,
                "errors_total": self.errors_total, "errors_consecutive": self.errors_consecutive,
                "events": self.events, "last_event_ms": self.last_event_ms,
                "models": {k: v.to_state() for k, v in self.models.items()}, "ensemble": self.ensemble.to_state(),
                "last_tick_at": self.last_tick_at, "max_gap": self.max_gap, "stream_added": self.stream_added,
                "qtsafe_version": __version__}


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    status: Status
    summary: str
    canary_id: str | None
    model: str | None
    activated_at: str | None
    ended_at: dt.datetime
    checks: int
    events: int
    violations: tuple[str, ...]
    rollback: dict[str, Any] | None
    timeline: tuple[dict[str, Any], ...]
    not_judged: tuple[str, ...]
    thresholds: tuple[dict[str, Any], ...] = ()
    monitor_rules: dict[str, Any] = dataclasses.field(default_factory=dict)
    loosened: tuple[dict[str, Any], ...] = ()
    resumed: bool = False
    report_path: Path | None = None
    json_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"command": "monitor", "status": self.status.value, "summary": self.summary,
                "canary_id": self.canary_id, "model": self.model, "activated_at": self.activated_at,
                "ended_at": iso(self.ended_at), "checks": self.checks, "events": self.events,
                "violations": list(self.violations), "rollback": self.rollback, "resumed": self.resumed,
                "not_judged": list(self.not_judged), "timeline": list(self.timeline),
                "thresholds": list(self.thresholds), "monitor_rules": self.monitor_rules,
                "loosened": list(self.loosened),
                "report_path": str(self.report_path) if self.report_path else None,
                "json_path": str(self.json_path) if self.json_path else None, "qtsafe_version": __version__}


NOT_JUDGED = ("error rate and latency: the trade.intent payload carries no such fields today",)
RollbackFn = Callable[..., Any]
StatusLine = Callable[[str], None]
StopCheck = Callable[[], str | None]


def _default_rollback() -> RollbackFn:
    from qtsafe.canary.lifecycle import rollback

    return rollback


def _activated_at(canary: canary_state.ActiveCanary) -> dt.datetime:
    if not canary.activated_at:
        raise StateError("the active canary has no activation time in its state; run 'qtsafe canary status'")
    return parse_utc(canary.activated_at)


def _stage_started_at(settings: Settings, canary: canary_state.ActiveCanary) -> dt.datetime:
    """Each stage is watched from when it began: activation, or the promotion to the current share."""
    stages = (canary_state.load_state(settings) or {}).get("stages") or []
    if stages and isinstance(stages[-1], dict) and stages[-1].get("at") and \
            float(stages[-1].get("share") or -1) == canary.stage:
        return parse_utc(str(stages[-1]["at"]))
    return _activated_at(canary)


def status_line(tick: Tick, watch: Watch, remaining: float, elapsed: float) -> str:
    """One line per tick: readable at a glance on a terminal and in journald."""
    models = " ".join(f"{name}:{fig['state'][:4]}" for name, fig in tick.models.items())
    return (f"[{iso(tick.at)}] check {tick.index} {tick.state.upper()} elapsed {elapsed / 3600:.2f}h "
            f"remaining {remaining / 3600:.2f}h events {tick.total_events} (+{tick.new_events}) {models}"
            + (f" error: {tick.error}" if tick.error else "")
            + (f" violations: {'; '.join(tick.violations)}" if tick.violations else ""))


def run_monitor(
    settings: Settings,
    source: Source,
    *,
    clock: Clock | None = None,
    duration: float | None = None,
    interval: float | None = None,
    rollback_fn: RollbackFn | None = None,
    stop_requested: StopCheck = lambda: None,
    emit: StatusLine = lambda line: None,
) -> MonitorResult:
    """Watch the active canary until the window ends, a violation rolls it back, or a stop is asked for."""
    clock = clock or SystemClock()
    duration = settings.monitor.duration if duration is None else duration
    interval = settings.monitor.interval if interval is None else interval
    roll_back: RollbackFn = rollback_fn or _default_rollback()
    canary = canary_state.active_canary(settings)
    if canary is None:
        raise StateError(f"no active canary on {settings.unit}: nothing to monitor (see 'qtsafe canary status')")
    activated = _stage_started_at(settings, canary)
    saved = _load_saved(settings)
    watch = Watch(settings, canary.canary_id, canary.model, activated, saved, stage=canary.stage)
    try:
        return _watch(settings, source, watch, canary, clock, duration, interval, roll_back, stop_requested, emit)
    except Unrecorded as exc:
        return _cannot_record(settings, watch, roll_back, clock.now(), exc.cause)


class Unrecorded(Exception):
    """The monitor could not write one of its own records (state, timeline, heartbeat, journal, report)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _recorded(write: Callable[..., Any], *args: Any) -> Any:
    """Run one write of the monitor's own records; any failure becomes :class:`Unrecorded`."""
    try:
        return write(*args)
    except (QtsafeError, OSError) as exc:
        raise Unrecorded(str(exc) if isinstance(exc, QtsafeError) else f"{type(exc).__name__}: {exc}") from exc


def _watch(settings: Settings, source: Source, watch: Watch, canary: canary_state.ActiveCanary, clock: Clock,
           duration: float, interval: float, roll_back: RollbackFn, stop_requested: StopCheck,
           emit: StatusLine) -> MonitorResult:
    activated = watch.activated_at
    if watch.resumed:
        watch.timeline = _load_timeline(settings, canary.canary_id, canary.stage)
    else:
        _recorded(lambda: monitor_timeline_path(settings).unlink(missing_ok=True))
    end_at = activated + dt.timedelta(seconds=duration)
    # Past the end, a watch whose last check could not read the stream keeps checking for this long.
    give_up_at = end_at + dt.timedelta(seconds=settings.monitor.end_grace)
    _recorded(lambda: append_record(
        settings, "monitoring_resumed" if watch.resumed else "monitoring_started",
        canary_id=canary.canary_id, canary_model=canary.model, stage=canary.stage,
        duration_hours=round(duration / 3600, 4), interval_seconds=interval,
        window_events=settings.monitor.window_events, checks_so_far=watch.checks,
        end_grace_seconds=settings.monitor.end_grace, loosened_thresholds=settings.loosened()))
    while True:
        now = clock.now()
        tick = watch.tick(source, now)
        _recorded(_record_tick, settings, watch, canary, tick)
        emit(status_line(tick, watch, max((end_at - now).total_seconds(), 0), (now - activated).total_seconds()))
        if now >= give_up_at and not tick.violations and _unclean_end(watch, tick):
            grace = settings.monitor.end_grace
            tick = dataclasses.replace(tick, state="violation", violations=(
                f"telemetry lost at the end of the watch: no check read the stream in the {grace:g} s grace "
                f"after the end ({_unclean_end(watch, tick)})",))
        if tick.violations:
            return _roll_back(settings, watch, tick, roll_back, now)
        still = canary_state.active_canary(settings)
        if still is None or still.canary_id != canary.canary_id or still.stage != canary.stage:
            return _recorded(_stopped, settings, watch, now, "the canary is no longer active (rolled back or replaced)")
        reason = stop_requested()
        if reason:
            return _recorded(_stopped, settings, watch, now, reason)
        if now >= end_at and _unclean_end(watch, tick) is None:
            missing = _missing_evidence(settings, watch, tick)
            if missing:
                return _recorded(_inconclusive, settings, watch, now, missing)
            return _recorded(_completed, settings, watch, now, duration)
        until = end_at if now < end_at else give_up_at
        clock.sleep(min(interval, max((until - now).total_seconds(), 0.0)))
        reason = stop_requested()
        if reason:
            return _recorded(_stopped, settings, watch, clock.now(), reason)


def _record_tick(settings: Settings, watch: Watch, canary: canary_state.ActiveCanary, tick: Tick) -> None:
    append_jsonl(monitor_timeline_path(settings), {"canary_id": canary.canary_id, "stage": canary.stage,
                                                   "row": watch.timeline[-1]})
    atomic_write_json(monitor_state_path(settings), watch.to_state())
    canary_state.write_heartbeat(settings, canary_id=canary.canary_id, canary_model=canary.model,
                                 stage=canary.stage, checks=watch.checks, events=watch.events, state=tick.state,
                                 last_id=watch.last_id)


def _unclean_end(watch: Watch, tick: Tick) -> str | None:
    """Why the watch may not end clean at this check, or None.

    Only a check that read the stream (and so everything since the last entry read, the gap of any
    earlier failed check included) can end a watch: one that failed says nothing about the last minutes.
    """
    if tick.error or watch.errors_consecutive:
        return (f"the last check failed: {tick.error}" if tick.error else
                f"the last {watch.errors_consecutive} checks failed")
    return None


def _load_saved(settings: Settings) -> dict[str, Any] | None:
    path = monitor_state_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"monitor state {path} is unreadable ({exc}); move it aside to start a fresh window") from exc
    return data if isinstance(data, dict) else None


def _finish(settings: Settings, result: MonitorResult) -> MonitorResult:
    """Write the final report (a new name if one from the same second exists). A FAIL result stays FAIL without
    it (the summary says so); for any other outcome an unwritten report is an unrecorded watch (:class:`Unrecorded`)."""
    stamp = file_stamp(result.ended_at)
    pending = result

    def render_pair(md: Path, js: Path) -> tuple[str, dict[str, Any]]:
        named = dataclasses.replace(pending, report_path=md, json_path=js)
        return render("monitor_final.md.j2", r=named, ended=iso(named.ended_at),
                      timeline=_timeline_rows(named)), named.to_dict()

    try:
        md, js = write_new_report(settings.reports_dir, lambda n: f"qsc_monitor_final_{stamp}{n}", render_pair)
    except (QtsafeError, OSError) as exc:
        if result.status is not Status.FAIL:
            raise Unrecorded(f"the final report: {exc}") from exc
        return dataclasses.replace(result, report_path=None, json_path=None,
                                   summary=f"{result.summary} (the final report could not be written: {exc})")
    return dataclasses.replace(result, report_path=md, json_path=js)


def _timeline_rows(result: MonitorResult) -> list[dict[str, Any]]:
    rows = list(result.timeline)
    if len(rows) <= 60:
        return rows
    step = max(len(rows) // 48, 1)
    picked = rows[::step]
    if picked[-1] is not rows[-1]:
        picked.append(rows[-1])
    return picked


def _base(watch: Watch, now: dt.datetime) -> dict[str, Any]:
    return {"canary_id": watch.canary_id, "model": watch.model, "activated_at": iso(watch.activated_at),
            "ended_at": now, "checks": watch.checks, "events": watch.events, "timeline": tuple(watch.timeline),
            "not_judged": NOT_JUDGED, "resumed": watch.resumed,
            "thresholds": tuple(watch.settings.thresholds_table()),
            "monitor_rules": dataclasses.asdict(watch.settings.monitor),
            "loosened": tuple(watch.settings.loosened())}


def _roll_back(settings: Settings, watch: Watch, tick: Tick, rollback_fn: RollbackFn,
               now: dt.datetime) -> MonitorResult:
    data, verified, rb_summary = _try_rollback(settings, rollback_fn, "qsc_monitor_violation", tick.violations,
                                               f"monitor check {tick.index}: {tick.violations[0]}")
    summary = (f"FAIL: canary {watch.model} rolled back at check {tick.index} - {tick.violations[0]}"
               if verified else
               f"FAIL: canary {watch.model} violated at check {tick.index} and the ROLLBACK FAILED - {rb_summary}")
    result = MonitorResult(status=Status.FAIL, summary=summary, violations=tick.violations, rollback=data,
                           **_base(watch, now))
    _clear_saved(settings)
    return _finish(settings, result)


def _try_rollback(settings: Settings, rollback_fn: RollbackFn, trigger: str, violations: tuple[str, ...],
                  reason: str) -> tuple[dict[str, Any], bool, str]:
    """(the rollback's result as a dict, verified?, its summary); a rollback that raises is one that failed."""
    try:
        outcome = rollback_fn(settings, trigger=trigger, violations=list(violations), reason=reason)
    except Exception as exc:  # noqa: BLE001 - the monitor must still say what happened and exit 2
        summary = f"ROLLBACK FAILED: {type(exc).__name__}: {exc}"
        return {"status": Status.FAIL.value, "summary": summary}, False, summary
    data = outcome.to_dict() if hasattr(outcome, "to_dict") else dict(outcome)
    return data, getattr(outcome, "status", None) is Status.PASS, str(getattr(outcome, "summary", ""))


def _cannot_record(settings: Settings, watch: Watch, rollback_fn: RollbackFn, now: dt.datetime,
                   cause: str) -> MonitorResult:
    """A monitor that cannot record its work rolls the canary back; failing that, it leaves the canary
    marked unmonitored (a ``monitoring_stopped`` record, no heartbeat) so ``canary status`` cannot say
    MONITORED. Either way the result is FAIL (exit 2). Never raises."""
    why = f"the monitor cannot record its work: {cause}"
    data, verified, rb_summary = _try_rollback(settings, rollback_fn, "qsc_monitor_write_failure", (why,),
                                               f"monitor check {watch.checks}: {why}")
    if verified:
        summary = f"FAIL: canary {watch.model} rolled back at check {watch.checks} - {why}"
        with contextlib.suppress(OSError):
            _clear_saved(settings)
    else:
        marked = _mark_unmonitored(settings, watch, why)
        summary = (f"FAIL: {why}; the ROLLBACK FAILED ({rb_summary}) and canary {watch.model} is UNMONITORED"
                   f"{marked} - roll back by hand with 'qtsafe canary rollback'")
    result = MonitorResult(status=Status.FAIL, summary=summary, violations=(why,), rollback=data,
                           **_base(watch, now))
    try:
        return _finish(settings, result)
    except Exception as exc:  # noqa: BLE001 - the disk that failed once may fail again; the result stands
        return dataclasses.replace(result, summary=f"{summary} (the final report could not be written: {exc})")


def _mark_unmonitored(settings: Settings, watch: Watch, why: str) -> str:
    """Best effort, so status shows the canary unwatched: journal ``monitoring_stopped``, remove the heartbeat."""
    done: list[str] = []
    try:
        append_record(settings, "monitoring_stopped", canary_id=watch.canary_id, canary_model=watch.model,
                      stage=watch.stage, reason=why, loosened_thresholds=settings.loosened(),
                      checks_performed=watch.checks, events=watch.events, result="unmonitored")
        done.append("monitoring_stopped journaled")
    except (QtsafeError, OSError):
        pass
    try:
        canary_state.heartbeat_path(settings).unlink(missing_ok=True)
        done.append("heartbeat removed")
    except OSError:
        pass
    return f" ({', '.join(done)})" if done else " (neither journaled nor heartbeat removed)"


def _missing_evidence(settings: Settings, watch: Watch, tick: Tick) -> str | None:
    """Why the watch cannot call the canary safe at its end, or None. Too little evidence is never "safe"."""
    canary = watch.models.get(watch.model)
    needed = settings.thresholds.min_events_canary
    have = canary.n if canary is not None else 0
    if have < needed:
        return f"only {have} valid {watch.model} votes since activation, need {needed}"
    limit = settings.monitor.heartbeat_max_age
    if watch.max_gap > limit:
        return (f"the canary went unwatched for {watch.max_gap / 60:.1f} min at a stretch (limit {limit:g} s): "
                "the monitor started late or was down")
    if tick.state == "inconclusive":
        waiting = [name for name, fig in tick.models.items() if fig["state"] == "inconclusive"]
        return ("the last check was inconclusive (" + (", ".join(waiting) or "ensemble") +
                " without a full window of evidence)")
    return None


def _inconclusive(settings: Settings, watch: Watch, now: dt.datetime, why: str) -> MonitorResult:
    append_record(settings, "monitoring_inconclusive", canary_id=watch.canary_id, canary_model=watch.model,
                  stage=watch.stage, reason=why, checks_performed=watch.checks, events=watch.events,
                  result="inconclusive", loosened_thresholds=settings.loosened())
    result = MonitorResult(status=Status.WAIT,
                           summary=f"INCONCLUSIVE: the watch of canary {watch.model} ended without enough evidence "
                                   f"({why}); it is NOT safe to promote. Extend the watch with 'qtsafe monitor "
                                   "--duration <longer>' (it resumes this window) or roll back",
                           violations=(), rollback=None, **_base(watch, now))
    # The saved state is kept so a longer watch resumes this window and its history.
    return _finish(settings, result)


def _completed(settings: Settings, watch: Watch, now: dt.datetime, duration: float) -> MonitorResult:
    append_record(settings, "monitoring_completed", canary_id=watch.canary_id, canary_model=watch.model,
                  duration_seconds=duration,  # exact: promote compares seconds, the rounded hours are for people
                  duration_hours=round(duration / 3600, 4), checks_performed=watch.checks, events=watch.events,
                  violations=None, result="safe", stage=watch.stage, loosened_thresholds=settings.loosened())
    result = MonitorResult(status=Status.COMPLETED,
                           summary=f"COMPLETED: canary {watch.model} watched {duration / 3600:.2f} h, "
                                   f"{watch.checks} checks, {watch.events:,} events, no violation",
                           violations=(), rollback=None, **_base(watch, now))
    _clear_saved(settings)
    return _finish(settings, result)


def _stopped(settings: Settings, watch: Watch, now: dt.datetime, reason: str) -> MonitorResult:
    append_record(settings, "monitoring_stopped", canary_id=watch.canary_id, canary_model=watch.model,
                  stage=watch.stage, reason=reason, loosened_thresholds=settings.loosened(),
                  checks_performed=watch.checks, events=watch.events, result="unmonitored")
    result = MonitorResult(status=Status.STOPPED,
                           summary=f"STOPPED: monitor of canary {watch.model} stopped after {watch.checks} checks "
                                   f"({reason}); the canary is UNMONITORED - resume with 'qtsafe monitor' or roll "
                                   "back with 'qtsafe canary rollback'",
                           violations=(), rollback=None, **_base(watch, now))
    return _finish(settings, result)


def _clear_saved(settings: Settings) -> None:
    # Best effort: a leftover state file is refused or ignored by the next watch (another canary or stage).
    for path in (monitor_state_path(settings), monitor_timeline_path(settings)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


# -- watchdog ---------------------------------------------------------------------------------------

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
    roll_back: RollbackFn = rollback_fn or _default_rollback()
    now = now or utc_now()
    limit = settings.monitor.heartbeat_max_age
    canary = canary_state.active_canary(settings)
    if canary is None:
        pending = canary_state.load_state(settings)
        if pending is None:
            return WatchdogResult(Status.PASS, "OK: no active canary; nothing to watch", None, None, None)
        # A canary stuck half-applied or half-rolled-back (its process died): nothing watches it. Repair it.
        since = pending.get("started_at") or pending.get("activated_at")
        stuck_for = (now - parse_utc(str(since))).total_seconds() if since else limit + 1
        if stuck_for <= limit:
            return WatchdogResult(Status.WAIT, f"WAIT: a canary is {pending.get('phase')} since {since}; "
                                               "checking again next run", pending.get("canary_id"), None, None)
        why = f"a canary was left {pending.get('phase')} at step {pending.get('step')} since {since}"
        data, verified, summary = _watchdog_rollback(settings, roll_back, why)
        return WatchdogResult(Status.FAIL, f"FAIL: {why}; " + ("repaired by rollback" if verified else
                                                               f"ROLLBACK FAILED - {summary}"),
                              pending.get("canary_id"), None, data)
    beat, age, problem = canary_state.read_heartbeat(settings)
    last = _last_monitor_record(settings, canary)
    if last is not None and last.get("action") == "monitoring_completed" and last.get("result") == "safe":
        return WatchdogResult(Status.WAIT, f"WAIT: canary {canary.model} finished a clean watch at "
                                           f"{last.get('timestamp')}; awaiting promote or rollback",
                              canary.canary_id, age, None)
    if beat is not None and age is not None and beat.get("canary_id") == canary.canary_id and age <= limit:
        return WatchdogResult(Status.PASS, f"OK: monitor of canary {canary.model} alive (heartbeat {age:.0f}s old)",
                              canary.canary_id, age, None)
    since = (now - _activated_at(canary)).total_seconds()
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


# -- replay -----------------------------------------------------------------------------------------

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

    def to_dict(self) -> dict[str, Any]:
        return {"command": "monitor --replay", "status": self.status.value, "summary": self.summary,
                "model": self.model, "from_id": self.from_id, "to_id": self.to_id, "checks": self.checks,
                "events": self.events, "firings": list(self.firings)}


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
                watch = Watch(settings, f"replay-{from_id}", model, dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC))
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
    return ReplayResult(status, summary, model, from_id, to_id, watch.checks, watch.events, tuple(firings))
