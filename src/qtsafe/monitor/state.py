"""The watch state of one canary stage and its persistence: rolling figures, checks, saved state and timeline."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from qtsafe import __version__
from qtsafe.canary import state as canary_state
from qtsafe.checks.dependence import AlphaSchedule
from qtsafe.checks.quality import FAIL, judge_defects
from qtsafe.config import Settings
from qtsafe.errors import InputError, StateError, TelemetryError
from qtsafe.fsio import append_jsonl, atomic_write_json
from qtsafe.monitor.evidence import (
    judge_canary_relative,
    judge_cumulative_model,
    judge_ensemble_batches,
    judge_ensemble_window,
    judge_window_model,
)
from qtsafe.monitor.outcomes import outcomes_for, restore
from qtsafe.monitor.rolling import RollingConsensus, RollingEnsemble, RollingModel
from qtsafe.monitor.stream import continuity_violations, stream_facts
from qtsafe.telemetry.columns import Telemetry
from qtsafe.telemetry.ids import MAX_ID, next_id, stream_id_for
from qtsafe.telemetry.parse import TelemetryBuilder
from qtsafe.telemetry.sources import Source
from qtsafe.timeutil import format_duration, iso, parse_utc, utc_now


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


def load_timeline(settings: Settings, canary_id: str, stage: float | None) -> list[dict[str, Any]]:
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
                 saved: dict[str, Any] | None = None, stage: float | None = None, *,
                 looks: int | None = None, repeat_schedule: bool = False) -> None:
        self.settings = settings
        m = settings.monitor
        # The watch's false-alarm budget over its planned checks (the grace past the end included), so 720
        # looks at noisy windows do not add up to a near-certain false rollback.
        planned = looks if looks is not None else math.ceil((m.duration + m.end_grace) / m.interval)
        self.schedule = AlphaSchedule(m.alpha, max(int(planned), 1))
        # The whole-watch agreement statistic changes only when a batch completes: its looks are the planned
        # batches, not the checks (looking at the same figure again spends no new chance of a false alarm).
        self.batch_looks = max(math.ceil(max(int(planned), 1) * m.interval / m.agreement_batch), 1)
        self.repeat_schedule = repeat_schedule  # a replay longer than a watch: each watch-length gets the budget
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
        batch_ms = int(m.agreement_batch * 1000)
        self.ensemble = (RollingEnsemble.from_state(saved["ensemble"], batch_ms) if saved
                         else RollingEnsemble(window, m.history_events, batch_ms=batch_ms))
        self.consensus = (RollingConsensus.from_state(saved["consensus"]) if saved and "consensus" in saved
                          else RollingConsensus(m.history_events))
        # Outcomes since activation (a state saved before they existed starts them afresh, from here).
        fresh = outcomes_for(settings.outcomes, canary=model, stall_seconds=m.stall_limit,
                             history=m.history_events, since_event=self.events)
        self.outcomes = restore(saved.get("outcomes"), fresh) if saved else fresh
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
        start = next_id(self.last_id) if self.last_id else stream_id_for(self.activated_at)
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
                rolling = self.models[name] = RollingModel(name, self.settings.monitor.window_events,
                                                           self.settings.monitor.history_events)
            rolling.update(columns, telemetry.event_ms, offset, telemetry.evaluated)
        self.ensemble.update(telemetry.votes, telemetry.event_ms)
        self.consensus.update(telemetry.evaluated, telemetry.models)
        self.outcomes.fold(telemetry)
        self.events += telemetry.evaluated
        if telemetry.evaluated:
            self.last_event_ms = int(telemetry.event_ms[-1])
        if telemetry.last_id:
            self.last_id = telemetry.last_id

    # -- judging -------------------------------------------------------------------------------
    def alpha_now(self) -> float:
        """The false-alarm budget of this check (0 past the planned checks of a live watch)."""
        look = (self.checks - 1) % self.schedule.looks + 1 if self.repeat_schedule else self.checks
        return self.schedule.for_look(look)

    def batch_alpha(self) -> float:
        """The budget of the whole-watch agreement rule at each completed batch (0 when the checks have none)."""
        return self.settings.monitor.alpha / self.batch_looks if self.alpha_now() > 0.0 else 0.0

    def judge(self, now: dt.datetime) -> tuple[list[str], bool, dict[str, dict[str, Any]]]:
        """(violations, inconclusive, per-model figures) for the state as it stands."""
        t = self.settings.thresholds
        m = self.settings.monitor
        violations: list[str] = []
        inconclusive = False
        figures: dict[str, dict[str, Any]] = {}
        alpha = self.alpha_now()
        for name, rolling in sorted(self.models.items()):
            findings = list(judge_defects(rolling.defects(), t, subject=name))
            recent = rolling.recent(t)
            state = "ok"
            if recent.n >= m.window_events:
                findings += judge_window_model(rolling.actions, rolling.conf, m.window_events, t, subject=name,
                                               scope=f"rolling window of {recent.n} events", alpha=alpha,
                                               market=self.consensus.market_shares(name, m.window_events))
                kept = int(rolling.actions.shape[0])
                if kept > m.window_events and kept >= m.history_events:
                    # A persistent defect too mild for 200 votes to establish (a 92 % HOLD dead zone, a
                    # narrow range with outliers) is established by the kept history of 1,000 votes.
                    findings += judge_window_model(rolling.actions, rolling.conf, kept, t, subject=name,
                                                   scope=f"last {kept} votes", alpha=alpha,
                                                   market=self.consensus.market_shares(name, kept))
            else:
                state = "inconclusive"
            if rolling.n >= t.min_events_canary:
                findings += judge_cumulative_model(rolling.cumulative(), rolling.actions, rolling.conf,
                                                   m.window_events, t, subject=name,
                                                   scope="time since activation", alpha=alpha,
                                                   market=self.consensus.market_shares(name))
            failing = list(dict.fromkeys(f.message for f in findings if f.severity == FAIL))
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
        violations += [f.message for f in judge_canary_relative(self.consensus, self.model, alpha=alpha)]
        violations += self.outcomes.violations(self.settings.outcomes, alpha=alpha)
        ensemble = self.ensemble.figures()
        if ensemble.events >= m.window_events:
            violations += [f.message for f in judge_ensemble_window(self.ensemble.shares, self.ensemble.hard,
                                                                    m.window_events, ensemble, t, alpha=alpha,
                                                                    votes=self.ensemble.votes)]
        else:
            inconclusive = True
        violations += [f.message for f in judge_ensemble_batches(self.ensemble.batch_means(), m.agreement_batch, t,
                                                                 alpha=self.batch_alpha())]
        last = (dt.datetime.fromtimestamp(self.last_event_ms / 1000, tz=dt.UTC) if self.last_event_ms is not None
                else self.activated_at)
        silent = (now - last).total_seconds()
        if silent > m.stall_limit:
            violations.append(f"telemetry stalled: no new trade.intent for {silent / 60:.1f} min "
                              f"(limit {format_duration(m.stall_limit)})")
        violations += self.budget_violations()
        return violations, inconclusive, figures

    def outcomes_report(self) -> dict[str, Any]:
        """The Outcomes section of the final report: the canary paired at one check's share of the alpha."""
        return self.outcomes.report(self.settings.outcomes, 1.0 - self.schedule.for_look(1))

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
                "consensus": self.consensus.to_state(), "outcomes": self.outcomes.to_state(),
                "last_tick_at": self.last_tick_at, "max_gap": self.max_gap, "stream_added": self.stream_added,
                "qtsafe_version": __version__}


def record_tick(settings: Settings, watch: Watch, canary: canary_state.ActiveCanary, tick: Tick) -> None:
    append_jsonl(monitor_timeline_path(settings), {"canary_id": canary.canary_id, "stage": canary.stage,
                                                   "row": watch.timeline[-1]})
    atomic_write_json(monitor_state_path(settings), watch.to_state(), compact=True)
    canary_state.write_heartbeat(settings, canary_id=canary.canary_id, canary_model=canary.model,
                                 stage=canary.stage, checks=watch.checks, events=watch.events, state=tick.state,
                                 last_id=watch.last_id)


def load_saved(settings: Settings) -> dict[str, Any] | None:
    path = monitor_state_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"monitor state {path} is unreadable ({exc}); move it aside to start a fresh window") from exc
    return data if isinstance(data, dict) else None


def clear_saved(settings: Settings) -> None:
    # Best effort: a leftover state file is refused or ignored by the next watch (another canary or stage).
    for path in (monitor_state_path(settings), monitor_timeline_path(settings)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
