"""The scoreboard: per-model health and ensemble agreement at a glance. GO / WAIT / NO-GO.

GO: every judged model passes the gate checks (canary thresholds) and the ensemble agreement is in
range with few hard disagreements. WAIT: models pass but the ensemble is out of range (exit 3).
NO-GO: any model fails, or there is too little evidence (exit 2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from qtsafe.checks.consensus import Kappa
from qtsafe.checks.ensemble import EnsembleFigures, ensemble_evidence, ensemble_figures, judge_ensemble_evidence
from qtsafe.checks.relative import RelativeWindow, judge_window, standout
from qtsafe.checks.rule_evidence import RuleEvidence
from qtsafe.config import Settings, Thresholds
from qtsafe.evidence import gather
from qtsafe.findings import FAIL, WARN, Finding
from qtsafe.gate import stall_finding
from qtsafe.judge import WindowJudgement, judge_models
from qtsafe.outcome_evidence import window_outcomes
from qtsafe.reports import render, write_report
from qtsafe.reports.charts import prefetch as prefetch_charts
from qtsafe.status import Status
from qtsafe.telemetry.sources import Progress, RedisStreamSource, Source
from qtsafe.telemetry.window import Window
from qtsafe.textsafe import visible
from qtsafe.timeutil import iso, utc_now


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreboardResult(WindowJudgement):
    """GO / WAIT / NO-GO with every model's verdict and the ensemble's figures."""

    ensemble: EnsembleFigures
    kappa: Kappa | None = None
    ensemble_evidence: tuple[RuleEvidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        ensemble = self.ensemble.to_dict()
        ensemble["kappa"] = self.kappa.to_dict()["kappa"] if self.kappa is not None else None
        ensemble["kappa_detail"] = self.kappa.to_dict() if self.kappa is not None else None
        ensemble["evidence"] = [ev.to_dict() for ev in self.ensemble_evidence]
        return {**self.common_dict("scoreboard"), "ensemble": ensemble}


def _drivers(relative: RelativeWindow, t: Thresholds) -> dict[str, str]:
    """Which voting model drives each ensemble rule: the one whose leave-one-out figure stands out."""
    out: dict[str, str] = {}
    margin = t.relative_margin_others
    hard = standout(relative.figures, relative.voting, margin=margin, key="hard_rate", highest=True)
    rates = sorted(relative.figures[n].hard_rate for n in relative.voting if relative.figures[n].sided)
    if hard is not None:
        name, value, second = hard
        out["hard_disagree"] = (f"; driven by {name}: BUY/SELL against the others' consensus in "
                                f"{value * 100:.0f} % of its sided votes, the next model {second * 100:.0f} %")
    elif len(rates) >= 2:
        out["hard_disagree"] = (f"; no single model stands out (voters against the others' consensus "
                                f"{rates[0] * 100:.0f}-{rates[-1] * 100:.0f} %)")
    low = standout(relative.figures, relative.voting, margin=margin, key="agreement", highest=False)
    if low is not None:
        name, value, second = low
        out["agreement"] = (f"; driven by {name}: agrees with the others' consensus in {value * 100:.0f} % of "
                            f"events, the next model {second * 100:.0f} %")
    return out


def run_scoreboard(
    settings: Settings,
    source: Source,
    window: Window,
    *,
    models: Sequence[str] | None = None,
    write_report_files: bool = True,
    progress: Progress | None = None,
    now: dt.datetime | None = None,
    prices: str | None = None,
) -> ScoreboardResult:
    """Judge every model and the ensemble; write ``reports/safety/scoreboard_latest.md`` + JSON."""
    now = now or utc_now()
    t = settings.thresholds
    evidence = gather(source, window, progress=progress, workers=settings.read_workers,
                      parallel_min=settings.parallel_min_entries,
                      idle=prefetch_charts if write_report_files and settings.charts else None)
    telemetry = evidence.telemetry
    relative = judge_window(telemetry, t, judged=list(models) if models else None)
    verdicts, findings = judge_models(telemetry, t, min_events=t.min_events_canary, only=models, relative=relative)
    stalled = stall_finding(evidence, settings, now, live=isinstance(source, RedisStreamSource))
    if stalled is not None:
        findings.append(stalled)
    figures = ensemble_figures(telemetry.votes)
    if figures.events < t.min_events_canary:
        # A handful of multi-voter events says nothing about agreement: not GO until there is evidence.
        findings.append(Finding("ensemble_insufficient", WARN,
                                f"ensemble: only {figures.events} events with two or more voting models, need "
                                f"{t.min_events_canary} to judge agreement", "ensemble", "whole window"))
    bounds = ensemble_evidence(telemetry.votes, t, alpha=t.evidence_alpha)
    if figures.events >= t.min_events_canary:
        findings += judge_ensemble_evidence(figures, bounds, t, drivers=_drivers(relative, t))
    if evidence.trimmed.get("detected"):
        findings.append(Finding("trimmed", WARN, evidence.trimmed["note"], "window", "whole window"))
    blocked = any(f.severity == FAIL for f in findings) or not all(m.passed for m in verdicts)
    waiting = any(f.severity == WARN and f.subject == "ensemble" for f in findings)
    status = Status.NO_GO if blocked else (Status.WAIT if waiting else Status.GO)
    failing = [m.name for m in verdicts if not m.passed]
    if status is Status.NO_GO:
        blockers = [f for f in findings if f.severity == FAIL] + [
            f for m in verdicts for f in m.findings if f.severity == FAIL]
        blockers.sort(key=lambda f: f.check not in ("insufficient_data", "no_models", "model_missing", "stalled"))
        more = f" (+{len(blockers) - 1} more)" if len(blockers) > 1 else ""
        if failing:
            summary = (f"NO-GO: {len(failing)} of {len(verdicts)} models fail the gate checks - "
                       f"{blockers[0].message}{more}")
        else:
            summary = f"NO-GO: {blockers[0].message}{more}"
    elif status is Status.WAIT:
        summary = (f"WAIT: all {len(verdicts)} models pass, ensemble out of range - "
                   + "; ".join(f.message for f in findings if f.subject == "ensemble"))
    else:
        summary = (f"GO: all {len(verdicts)} models pass; agreement {figures.agreement * 100:.1f} %, "
                   f"hard disagree {figures.hard_disagree * 100:.1f} %")
    result = ScoreboardResult(status=status, summary=summary, generated_at=now, source=evidence.source,
                              window=window, min_events=t.min_events_canary, models=tuple(verdicts),
                              ensemble=figures, kappa=relative.kappa, ensemble_evidence=tuple(bounds.values()),
                              findings=tuple(findings),
                              reconciliation=telemetry.reconciliation(), trimmed=evidence.trimmed,
                              thresholds=settings.thresholds_table(), loosened=settings.loosened(),
                              outcomes=window_outcomes(settings, telemetry, prices=prices))
    if not write_report_files:
        return result
    directory = settings.reports_dir
    result = dataclasses.replace(result, report_path=directory / "scoreboard_latest.md",
                                 json_path=directory / "scoreboard_latest.json")
    markdown = render("scoreboard.md.j2", r=result, generated=iso(now), findings=result.all_findings,
                      cutover=iso(window.after) or "none (whole retained stream)")
    write_report(directory, "scoreboard_latest", markdown, result.to_dict(), charts=settings.charts)
    return result


def render_scoreboard_text(result: ScoreboardResult) -> str:
    e = result.ensemble
    lines = [result.summary]
    for m in result.models:
        w = m.whole
        state = "GO   " if m.passed else "NO-GO"
        shares = " ".join(f"{a}={'n/a' if w.action_share[a] != w.action_share[a] else f'{w.action_share[a]*100:.0f}%'}"
                          for a in ("BUY", "SELL", "HOLD"))
        std = "n/a" if w.conf_std != w.conf_std else f"{w.conf_std:.3f}"
        lines.append(f"  {state} {m.name:<10} n={w.n:<7} {shares}  std={std}" + ("  (shadow)" if m.shadow else ""))
    agreement = "n/a" if e.events == 0 else f"{e.agreement * 100:.1f}%"
    hard = "n/a" if e.events == 0 else f"{e.hard_disagree * 100:.1f}%"
    kappa = result.kappa.kappa if result.kappa is not None else float("nan")
    kappa_text = "n/a" if kappa != kappa else f"{kappa:.2f}"
    lines.append(f"  ensemble: agreement {agreement} (Fleiss' kappa {kappa_text}), hard disagree {hard} "
                 f"over {e.events:,} events")
    for f in result.all_findings:
        lines.append(f"  - {f.severity}: {f.message}")
    if result.report_path:
        lines.append(f"  report: {result.report_path}")
    # Names come from telemetry or the command line: each line shows them escaped, so none adds a line.
    return "\n".join(visible(line) for line in lines)
