"""The watch: every interval for the monitor's duration, judge what arrived since the last tick.

Any violation rolls the canary back in-process (verified), journals and exits 2. Losing telemetry is a
violation too: no new trade.intent for longer than the stall limit, or Redis errors on too many ticks
in a row or in all. A run that completes with no violation journals ``monitoring_completed`` and exits
0; a run stopped by a signal journals ``monitoring_stopped`` and exits 3 (the canary stays active,
unmonitored, and ``canary status`` says so). No path ends in "safe" except completion, and a watch
completes only on a check that read the stream: past the end it keeps checking for ``monitor.end_grace``,
then fails closed. Before each read the stream's existence, type and continuity are checked
(:mod:`qtsafe.monitor.stream`). A monitor that cannot write its own records rolls the canary back, or
failing that journals ``monitoring_stopped`` and removes its heartbeat, and exits 2.

State is saved after every tick (``data/qsc_monitor_state.json``), so a monitor restarted after a
crash resumes the same window, counted from activation, with its check history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from qtsafe import __version__
from qtsafe.canary import state as canary_state
from qtsafe.canary.journal import append_record
from qtsafe.config import Settings
from qtsafe.errors import QtsafeError, StateError
from qtsafe.evidence import gc_paused
from qtsafe.monitor.live import RollbackFn, default_rollback, stage_started_at
from qtsafe.monitor.state import (
    Tick,
    Watch,
    clear_saved,
    load_saved,
    load_timeline,
    monitor_state_path,
    monitor_timeline_path,
    record_tick,
)
from qtsafe.reports import render, write_new_report
from qtsafe.status import Status
from qtsafe.telemetry.sources import Source
from qtsafe.timeutil import file_stamp, iso, utc_now


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
    outcomes: dict[str, Any] | None = None  # what prices did next since activation (RollingOutcomes.report)
    report_path: Path | None = None
    json_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"command": "monitor", "status": self.status.value, "summary": self.summary,
                "canary_id": self.canary_id, "model": self.model, "activated_at": self.activated_at,
                "ended_at": iso(self.ended_at), "checks": self.checks, "events": self.events,
                "violations": list(self.violations), "rollback": self.rollback, "resumed": self.resumed,
                "not_judged": list(self.not_judged), "timeline": list(self.timeline),
                "thresholds": list(self.thresholds), "monitor_rules": self.monitor_rules,
                "loosened": list(self.loosened), "outcomes": self.outcomes,
                "report_path": str(self.report_path) if self.report_path else None,
                "json_path": str(self.json_path) if self.json_path else None, "qtsafe_version": __version__}


NOT_JUDGED = ("error rate and latency: the trade.intent payload carries no such fields today",)


StatusLine = Callable[[str], None]


StopCheck = Callable[[], str | None]


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
    roll_back: RollbackFn = rollback_fn or default_rollback()
    canary = canary_state.active_canary(settings)
    if canary is None:
        raise StateError(f"no active canary on {settings.unit}: nothing to monitor (see 'qtsafe canary status')")
    activated = stage_started_at(settings, canary)
    saved = load_saved(settings)
    looks = math.ceil((duration + settings.monitor.end_grace) / interval)  # the checks the alpha budget covers
    try:
        watch = Watch(settings, canary.canary_id, canary.model, activated, saved, stage=canary.stage, looks=looks)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # Valid JSON whose content is not a watch (a field missing, an array that does not decode): never
        # guessed around, and never a traceback.
        raise StateError(f"monitor state {monitor_state_path(settings)} is malformed ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:120]}); move it aside to start a fresh window") from exc
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
        watch.timeline = load_timeline(settings, canary.canary_id, canary.stage)
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
        # The check allocates briefly and keeps no cycles: a collection in the middle of it (the long-lived
        # heap scanned) doubled a check's time; it runs after the check's records instead (bench_monitor.py).
        with gc_paused():
            tick = watch.tick(source, now)
            _recorded(record_tick, settings, watch, canary, tick)
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


def _unclean_end(watch: Watch, tick: Tick) -> str | None:
    """Why the watch may not end clean at this check, or None.

    Only a check that read the stream (and so everything since the last entry read, the gap of any
    earlier failed check included) can end a watch: one that failed says nothing about the last minutes.
    """
    if tick.error or watch.errors_consecutive:
        return (f"the last check failed: {tick.error}" if tick.error else
                f"the last {watch.errors_consecutive} checks failed")
    return None


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
        md, js = write_new_report(settings.reports_dir, lambda n: f"qsc_monitor_final_{stamp}{n}", render_pair,
                                  charts=settings.charts)
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
            "loosened": tuple(watch.settings.loosened()), "outcomes": _outcomes_or_note(watch)}


def _outcomes_or_note(watch: Watch) -> dict[str, Any]:
    """The report's outcomes section; a failure to compute it is a note, never a lost final report."""
    try:
        return watch.outcomes_report()
    except Exception as exc:  # noqa: BLE001 - the final report must still be written
        return {"note": f"outcomes not reported: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}


def _roll_back(settings: Settings, watch: Watch, tick: Tick, rollback_fn: RollbackFn,
               now: dt.datetime) -> MonitorResult:
    data, verified, rb_summary = _try_rollback(settings, rollback_fn, "qsc_monitor_violation", tick.violations,
                                               f"monitor check {tick.index}: {tick.violations[0]}")
    summary = (f"FAIL: canary {watch.model} rolled back at check {tick.index} - {tick.violations[0]}"
               if verified else
               f"FAIL: canary {watch.model} violated at check {tick.index} and the ROLLBACK FAILED - {rb_summary}")
    result = MonitorResult(status=Status.FAIL, summary=summary, violations=tick.violations, rollback=data,
                           **_base(watch, now))
    clear_saved(settings)
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
            clear_saved(settings)
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
    clear_saved(settings)
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
