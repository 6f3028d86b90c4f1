"""Judging every model in a window the same way for the gate, the scoreboard and the monitor."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qtsafe import __version__
from qtsafe.checks.consensus import judge_relative
from qtsafe.checks.quality import ModelStats, judge_defects, judge_presence, judge_stats, model_stats
from qtsafe.checks.relative import RelativeWindow, judge_window
from qtsafe.checks.rule_evidence import RuleEvidence, model_evidence
from qtsafe.config import Thresholds
from qtsafe.findings import FAIL, Finding
from qtsafe.status import Status
from qtsafe.telemetry.columns import ModelColumns, Telemetry
from qtsafe.telemetry.window import Window
from qtsafe.timeutil import iso
from qtsafe.votes import VoteDefects


@dataclasses.dataclass(frozen=True)
class ModelVerdict:
    """One model's figures over the whole window and its most recent part, and every finding."""

    name: str
    shadow: bool
    whole: ModelStats
    recent: ModelStats
    defects: VoteDefects
    findings: tuple[Finding, ...]
    examples: dict[str, str]
    baseline: ModelStats | None = None
    relative: dict[str, Any] | None = None  # leave-one-out figures and verdicts (RelativeWindow.to_dict)
    events: int = 0  # the window's evaluated events: presence is defects.present of these
    evidence: tuple[RuleEvidence, ...] = ()  # each rule's estimate, bounds and limit, whole window then recent

    @property
    def passed(self) -> bool:
        return not any(f.severity == FAIL for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shadow": self.shadow,
            "passed": self.passed,
            "whole": self.whole.to_dict(),
            "recent": self.recent.to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
            "relative": self.relative,
            "defects": self.defects.to_dict(),
            "presence": {"present": self.defects.present, "events": self.events,
                         "share": self.defects.present / self.events if self.events else None},
            "defect_examples": dict(self.examples),
            "evidence": [ev.to_dict() for ev in self.evidence],
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class WindowJudgement:
    """What the gate and the scoreboard share: a verdict on every model in one window, and where it was written."""

    status: Status
    summary: str
    generated_at: dt.datetime
    source: str
    window: Window
    min_events: int
    models: tuple[ModelVerdict, ...]
    findings: tuple[Finding, ...]
    reconciliation: dict[str, Any]
    trimmed: dict[str, Any]
    thresholds: list[dict[str, Any]]
    loosened: list[dict[str, Any]]
    report_path: Path | None = None
    json_path: Path | None = None
    outcomes: dict[str, Any] | None = None  # what prices did next (informational: no verdict rests on it)

    @property
    def all_findings(self) -> list[Finding]:
        return list(self.findings) + [f for m in self.models for f in m.findings]

    def common_dict(self, command: str) -> dict[str, Any]:
        return {
            "command": command,
            "status": self.status.value,
            "summary": self.summary,
            "generated_at": iso(self.generated_at),
            "source": self.source,
            "window": self.window.to_dict(),
            "min_events": self.min_events,
            "models": [m.to_dict() for m in self.models],
            "findings": [f.to_dict() for f in self.all_findings],
            "reconciliation": self.reconciliation,
            "trimmed": self.trimmed,
            "thresholds": self.thresholds,
            "loosened": self.loosened,
            "report_path": str(self.report_path) if self.report_path else None,
            "json_path": str(self.json_path) if self.json_path else None,
            "outcomes": self.outcomes,
            "qtsafe_version": __version__,
        }


def judge_model(columns: ModelColumns, thresholds: Thresholds, *, min_events: int, events: int = 0) -> ModelVerdict:
    """Whole window and the last ``recent_window`` valid votes; either failing fails the model.

    ``events`` is the window's evaluated events, for the presence rule (0: not judged).
    """
    t = thresholds
    whole = model_stats(columns.action, columns.conf, t)
    tail = t.recent_window
    recent = model_stats(columns.action[-tail:], columns.conf[-tail:], t)
    findings = list(judge_defects(columns.defects, t, subject=columns.name))
    findings += judge_presence(columns.defects.present, events, t, subject=columns.name)
    whole_ev = model_evidence(columns.action, columns.conf, t, scope="whole window", alpha=t.evidence_alpha)
    evidence = list(whole_ev.values())
    # A proportion rule fails when its bound establishes the breach, over the whole window as over the recent
    # one (issue 12 section 3); a breach by the estimate alone is a WARN, named in the summary, never silent.
    findings += judge_stats(whole, t, subject=columns.name, scope="whole window", min_events=min_events,
                            evidence=whole_ev)
    if whole.n > tail:
        # Only when the recent window is a real sub-window; otherwise it repeats the whole window. Its few,
        # correlated events fail a proportion rule only when a bound establishes the breach (docs/verdicts.md).
        scope = f"most recent {recent.n} events"
        recent_ev = model_evidence(columns.action[-tail:], columns.conf[-tail:], t, scope=scope,
                                   alpha=t.evidence_alpha)
        evidence += recent_ev.values()
        findings += judge_stats(recent, t, subject=columns.name, scope=scope, min_events=None, evidence=recent_ev)
    return ModelVerdict(
        name=columns.name,
        shadow=columns.shadow > 0 and columns.shadow * 2 >= max(columns.n_valid, 1),
        whole=whole,
        recent=recent,
        defects=columns.defects,
        findings=tuple(findings),
        examples=dict(columns.examples),
        events=events,
        evidence=tuple(evidence),
    )


_THREADED_EVENTS = 100_000  # evaluated events from which judging goes on threads


def judge_models(
    telemetry: Telemetry,
    thresholds: Thresholds,
    *,
    min_events: int,
    only: Sequence[str] | None = None,
    baseline: Telemetry | None = None,
    relative: RelativeWindow | None = None,
) -> tuple[list[ModelVerdict], list[Finding]]:
    """Verdicts for the models seen (or those asked for) and window-level findings.

    ``relative`` is the window's leave-one-out judgement if the caller already has it (the scoreboard).
    """
    window_findings: list[Finding] = []
    names = list(only) if only else sorted(telemetry.models)
    if not names:
        window_findings.append(Finding("no_models", FAIL,
                                       f"no model votes in the window ({telemetry.read} entries read, "
                                       f"{telemetry.evaluated} evaluated)", "window", "whole window"))
    present = [name for name in names if name in telemetry.models]
    for name in names:
        if name not in telemetry.models:
            seen = ", ".join(sorted(telemetry.models)) or "none"
            window_findings.append(Finding("model_missing", FAIL,
                                           f"{name}: no entries for this model in the window (models seen: {seen})",
                                           name, "whole window"))

    def one(name: str) -> ModelVerdict:
        verdict = judge_model(telemetry.models[name], thresholds, min_events=min_events, events=telemetry.evaluated)
        if baseline is not None and name in baseline.models:
            before = baseline.models[name]
            verdict = dataclasses.replace(verdict, baseline=model_stats(before.action, before.conf, thresholds))
        return verdict

    if not present:
        return [], window_findings
    # Large windows: the models are judged on threads beside the window's leave-one-out judgement (numpy's sorts,
    # reductions and FFTs release the GIL); small ones in line, where a thread would cost more than it saves.
    if telemetry.evaluated < _THREADED_EVENTS:
        verdicts = [one(name) for name in present]
    else:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="qtsafe-judge") as pool:
            window = (pool.submit(judge_window, telemetry, thresholds, baseline=baseline, judged=present)
                      if relative is None else None)
            verdicts = list(pool.map(one, present))
            relative = window.result() if window is not None else relative
    if relative is None:
        relative = judge_window(telemetry, thresholds, baseline=baseline, judged=present)
    verdicts = [with_relative(v, relative) for v in verdicts]
    return verdicts, window_findings


def with_relative(verdict: ModelVerdict, relative: RelativeWindow) -> ModelVerdict:
    """Add the relative rule's findings (whole window and the model's recent votes) and figures to a verdict."""
    found: list[Finding] = []
    whole = relative.whole.get(verdict.name)
    if whole is not None:
        found += judge_relative([whole], scope="whole window")
    recent = relative.recent.get(verdict.name)
    if recent is not None:
        found += judge_relative([recent[1]], scope=f"most recent {verdict.recent.n} events")
    return dataclasses.replace(verdict, findings=verdict.findings + tuple(found),
                               relative=relative.to_dict(verdict.name))
