"""Judging every model in a window the same way for the gate, the scoreboard and the monitor."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from qtsafe.checks.quality import FAIL, Finding, ModelStats, VoteDefects, judge_defects, judge_stats, model_stats
from qtsafe.config import Thresholds
from qtsafe.telemetry.parse import ModelColumns, Telemetry


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
            "defects": self.defects.to_dict(),
            "defect_examples": dict(self.examples),
            "findings": [f.to_dict() for f in self.findings],
        }


def judge_model(columns: ModelColumns, thresholds: Thresholds, *, min_events: int) -> ModelVerdict:
    """Whole window and the last ``recent_window`` valid votes; either failing fails the model."""
    t = thresholds
    whole = model_stats(columns.action, columns.conf, t)
    tail = t.recent_window
    recent = model_stats(columns.action[-tail:], columns.conf[-tail:], t)
    findings = list(judge_defects(columns.defects, t, subject=columns.name))
    findings += judge_stats(whole, t, subject=columns.name, scope="whole window", min_events=min_events)
    if whole.n > tail:
        # Only when the recent window is a real sub-window; otherwise it repeats the whole window.
        findings += judge_stats(recent, t, subject=columns.name, scope=f"most recent {recent.n} events",
                                min_events=None)
    return ModelVerdict(
        name=columns.name,
        shadow=columns.shadow > 0 and columns.shadow * 2 >= max(columns.n_valid, 1),
        whole=whole,
        recent=recent,
        defects=columns.defects,
        findings=tuple(findings),
        examples=dict(columns.examples),
    )


def judge_models(
    telemetry: Telemetry,
    thresholds: Thresholds,
    *,
    min_events: int,
    only: Sequence[str] | None = None,
    baseline: Telemetry | None = None,
) -> tuple[list[ModelVerdict], list[Finding]]:
    """Verdicts for the models seen (or those asked for) and window-level findings."""
    window_findings: list[Finding] = []
    names = list(only) if only else sorted(telemetry.models)
    if not names:
        window_findings.append(Finding("no_models", FAIL,
                                       f"no model votes in the window ({telemetry.read} entries read, "
                                       f"{telemetry.evaluated} evaluated)", "window", "whole window"))
    verdicts: list[ModelVerdict] = []
    for name in names:
        columns = telemetry.models.get(name)
        if columns is None:
            seen = ", ".join(sorted(telemetry.models)) or "none"
            window_findings.append(Finding("model_missing", FAIL,
                                           f"{name}: no entries for this model in the window (models seen: {seen})",
                                           name, "whole window"))
            continue
        verdict = judge_model(columns, thresholds, min_events=min_events)
        if baseline is not None and name in baseline.models:
            before = baseline.models[name]
            verdict = dataclasses.replace(verdict, baseline=model_stats(before.action, before.conf, thresholds))
        verdicts.append(verdict)
    return verdicts, window_findings
