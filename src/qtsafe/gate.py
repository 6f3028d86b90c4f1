"""The quality gate: is every judged model's output healthy after the cutover?

``collection`` mode gathers evidence (>= 100 events per model) and never promotes: a clean result is
COLLECTED (exit 3). ``canary`` mode needs >= 200 events per model and every check green for PASS.
Too little evidence, any blocker, or an unreadable source is FAIL (exit 2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qtsafe.checks.stall import stall_rule
from qtsafe.config import Settings
from qtsafe.errors import InputError
from qtsafe.evidence import Evidence, gather, gather_before
from qtsafe.findings import FAIL, WARN, Finding
from qtsafe.judge import ModelVerdict, WindowJudgement, judge_models
from qtsafe.outcome_evidence import window_outcomes
from qtsafe.reports import render, write_new_report
from qtsafe.reports.charts import prefetch as prefetch_charts
from qtsafe.status import Status
from qtsafe.telemetry.ids import stream_id_time
from qtsafe.telemetry.sources import Progress, RedisStreamSource, Source
from qtsafe.telemetry.window import Window, resolve_window
from qtsafe.textsafe import visible
from qtsafe.timeutil import file_stamp, iso, utc_now

MODES = ("collection", "canary")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateResult(WindowJudgement):
    """The gate's verdict, figures and findings, and where the report was written."""

    mode: str
    baseline_events: int | None
    read_seconds: float

    def model_verdict(self, name: str) -> tuple[bool, int] | None:
        """``(passed, events judged over the whole window)`` for model ``name``; None if it had no telemetry."""
        return next(((m.passed, m.whole.n) for m in self.models if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {**self.common_dict("quality-gate"), "mode": self.mode, "baseline_events": self.baseline_events,
                "read_seconds": round(self.read_seconds, 3)}


def stall_finding(evidence: Evidence, settings: Settings, now: dt.datetime, *, live: bool) -> Finding | None:
    """A live read whose newest trade.intent is older than the stall limit (at --until, or now): stopped."""
    telemetry = evidence.telemetry
    newest = int(telemetry.event_ms[-1]) if telemetry.evaluated else None
    return stall_check(newest, evidence.window, settings, now, live=live)


def stall_check(newest_ms: int | None, window: Window, settings: Settings, now: dt.datetime, *,
                live: bool) -> Finding | None:
    """The stall rule (:func:`qtsafe.checks.stall.stall_rule`) for a live read of ``window``.

    Kept here for sanity, doctor, monitor and the canary tests; remove when they call the rule in checks/.
    """
    if not live:
        return None
    return stall_rule(newest_ms, window.until, now, settings.monitor.stall_limit)


def _summary(status: Status, mode: str, verdicts: Sequence[ModelVerdict], findings: Sequence[Finding],
             evaluated: int) -> str:
    failing = [f for f in findings if f.severity == FAIL] + [
        f for m in verdicts for f in m.findings if f.severity == FAIL
    ]
    # Too little evidence is the first thing an operator needs to know: it makes every figure moot.
    failing.sort(key=lambda f: f.check not in ("insufficient_data", "no_models", "model_missing", "stalled"))
    names = ", ".join(m.name for m in verdicts) or "no models"
    if status is Status.FAIL:
        first = failing[0].message if failing else "blocked"
        more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
        return f"FAIL: quality gate ({mode}) - {first}{more}"
    # A model's WARN (a breach by estimate that no bound establishes) is named here too: never silently green.
    warnings = [f for f in findings if f.severity == WARN] + [
        f for m in verdicts for f in m.findings if f.severity == WARN]
    warned = f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''}: {warnings[0].check})" if warnings else ""
    if status is Status.COLLECTED:
        return (f"COLLECTED: quality gate (collection) - {evaluated:,} events, models {names}: all checks green"
                f"{warned}; collection mode never promotes (exit 3)")
    return f"PASS: quality gate (canary) - {evaluated:,} events, models {names}: all checks green{warned}"


def run_quality_gate(
    settings: Settings,
    source: Source,
    window: Window,
    *,
    mode: str,
    models: Sequence[str] | None = None,
    baseline_window: bool = False,
    write_report: bool = True,
    progress: Progress | None = None,
    now: dt.datetime | None = None,
    require_fresh: bool = False,
    prices: str | None = None,
) -> GateResult:
    """Read the window, judge every model (whole window and recent part), write the report.

    Live Redis reads fail when the newest event is older than the stall limit; ``require_fresh`` applies
    that to exports too (canary activation: a model is never promoted on old evidence).
    """
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r} (use collection or canary)")
    now = now or utc_now()
    t = settings.thresholds
    min_events = t.min_events_collection if mode == "collection" else t.min_events_canary
    evidence = gather(source, window, progress=progress, workers=settings.read_workers,
                      parallel_min=settings.parallel_min_entries,
                      idle=prefetch_charts if write_report and settings.charts else None)
    telemetry = evidence.telemetry
    baseline = None
    if baseline_window:
        if window.after is None:
            raise InputError("--baseline-window needs a cutover (--after)")
        baseline = gather_before(source, window.start_id, telemetry.read)
    # The outcomes section is informational and independent of the verdicts: scored on a second thread while
    # the models are judged (both are numpy work that releases the GIL; ~0.4 s of a million-event gate).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qtsafe-outcomes") as pool:
        scoring = pool.submit(window_outcomes, settings, telemetry,
                              canary=models[0] if models and len(models) == 1 else None, prices=prices)
        verdicts, findings = judge_models(telemetry, t, min_events=min_events, only=models, baseline=baseline)
        outcomes = scoring.result()
    stalled = stall_finding(evidence, settings, now, live=require_fresh or isinstance(source, RedisStreamSource))
    if stalled is not None:
        findings.append(stalled)
    if evidence.trimmed.get("detected"):
        # The verdict uses what remains (the stream cap is the producer's), but nobody may miss that it did.
        findings.append(Finding("trimmed", WARN, evidence.trimmed["note"], "window", "whole window"))
    if not evidence.telemetry.reconciliation()["balanced"]:  # pragma: no cover - an invariant of the reader
        findings.append(Finding("reconciliation", FAIL, "entries read do not reconcile", "window", "whole window"))
    blocked = any(f.severity == FAIL for f in findings) or not all(m.passed for m in verdicts)
    status = Status.FAIL if blocked else (Status.COLLECTED if mode == "collection" else Status.PASS)
    result = GateResult(
        status=status,
        mode=mode,
        summary=_summary(status, mode, verdicts, findings, telemetry.evaluated),
        generated_at=now,
        source=evidence.source,
        window=window,
        min_events=min_events,
        models=tuple(verdicts),
        findings=tuple(findings),
        reconciliation=telemetry.reconciliation(),
        trimmed=evidence.trimmed,
        thresholds=settings.thresholds_table(),
        loosened=settings.loosened(),
        baseline_events=baseline.evaluated if baseline is not None else None,
        read_seconds=evidence.read_seconds,
        outcomes=outcomes,
    )
    if not write_report:
        return result
    kind = "_collection" if mode == "collection" else ""
    stamp = file_stamp(now)
    pending = result

    def render_pair(md: Path, js: Path) -> tuple[str, dict[str, Any]]:
        named = dataclasses.replace(pending, report_path=md, json_path=js)
        return render_gate_report(named, telemetry.first_id, telemetry.last_id), named.to_dict()

    # A second run in the same second gets quality_gate_<ts>_2[_collection]_post_cutover: the pattern stays.
    md, js = write_new_report(settings.reports_dir, lambda n: f"quality_gate_{stamp}{n}{kind}_post_cutover",
                              render_pair, charts=settings.charts)
    return dataclasses.replace(result, report_path=md, json_path=js)


def run_quality_gate_after(
    settings: Settings,
    source: Source,
    *,
    after: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    last: int | None = None,
    **options: Any,
) -> GateResult:
    """:func:`run_quality_gate` for a cutover not yet resolved to a window.

    Kept for ``canary activate`` (canary/lifecycle.py, r-canary), which passes ``after=``; remove when its
    ``_resolve_after`` is ported to :func:`qtsafe.telemetry.window.resolve_window`.
    """
    return run_quality_gate(settings, source, resolve_window(after, until, last), **options)


def _id_time(entry_id: str | None) -> str:
    if not entry_id or entry_id in ("-", "+"):
        return ""
    try:
        return iso(stream_id_time(entry_id)) or ""
    except InputError:
        return ""


def render_gate_report(result: GateResult, first_id: str | None, last_id: str | None) -> str:
    """The Markdown report: one-line verdict first, then the window, models, findings, reconciliation."""
    return render(
        "quality_gate.md.j2",
        r=result,
        first_id=first_id or "none",
        last_id=last_id or "none",
        first_time=_id_time(first_id),
        last_time=_id_time(last_id),
        generated=iso(result.generated_at),
        cutover=iso(result.window.after) or "none (whole retained stream)",
        findings=result.all_findings,
    )


def render_gate_text(result: GateResult) -> str:
    """What the terminal shows: the summary line, then one line per model and the report path."""
    lines = [result.summary]
    lines.append(f"  window: {iso(result.window.after) or 'whole stream'} -> {iso(result.window.until) or 'now'}"
                 f"  read {result.reconciliation['read']:,}  evaluated {result.reconciliation['evaluated']:,}"
                 f"  need {result.min_events} per model")
    for m in result.models:
        w = m.whole
        lines.append(
            f"  {'PASS' if m.passed else 'FAIL'} {m.name:<10} n={w.n:<7} "
            + " ".join(f"{a}={_p(w.action_share[a])}" for a in ("BUY", "SELL", "HOLD"))
            + f"  std={_f(w.conf_std)} P10-P90={_f(w.spread)}" + ("  (shadow)" if m.shadow else "")
        )
    for f in result.all_findings:
        lines.append(f"  - {f.severity}: {f.message}")
    if result.trimmed.get("detected"):
        lines.append(f"  ! {result.trimmed['note']}")
    if result.loosened:
        lines.append("  ! loosened thresholds: " + ", ".join(f"{x['rule']}={x['value']} (default {x['default']})"
                                                          for x in result.loosened))
    if result.report_path:
        lines.append(f"  report: {result.report_path}")
    # Names come from telemetry or the command line: each line shows them escaped, so none adds a line.
    return "\n".join(visible(line) for line in lines)


def _p(value: float) -> str:
    return "n/a" if value != value else f"{value * 100:.0f}%"


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"
