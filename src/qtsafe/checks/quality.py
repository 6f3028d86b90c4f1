"""Per-model output quality: the DESIGN.md rules applied to one model's actions and confidences.

Used by the telemetry gate, the scoreboard, the monitor and the offline model gate, so every path
judges a model by the same code. Inputs are numpy columns of *valid* votes only: actions as int8
codes (:data:`ACTIONS`) and finite, non-negative confidences. Defects (NaN, unknown actions, ...)
are counted by the reader and judged by :func:`judge_defects`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from qtsafe.checks.dependence import sorted_percentile
from qtsafe.checks.rule_evidence import RuleEvidence
from qtsafe.config import Thresholds

# Finding and its severities live in qtsafe.findings; kept importable from here for models/, monitor and the
# checks that import them from here. Remove the re-export when those import qtsafe.findings.
from qtsafe.findings import FAIL as FAIL
from qtsafe.findings import WARN as WARN
from qtsafe.findings import Finding as Finding

# ACTIONS and VoteDefects live in qtsafe.votes; kept importable from here for models/, rolling.py and the
# tests. Remove the re-export when those import qtsafe.votes.
from qtsafe.votes import ACTIONS as ACTIONS
from qtsafe.votes import VoteDefects as VoteDefects


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """Figures for one model over one window of valid votes (NaN figures when there are none)."""

    n: int
    action_counts: dict[str, int]
    action_share: dict[str, float]
    conf_mean: float
    conf_std: float
    p10: float
    p50: float
    p90: float
    dead_zone_share: float

    @property
    def spread(self) -> float:
        return self.p90 - self.p10

    @property
    def top_action(self) -> str:
        return max(ACTIONS, key=lambda a: (self.action_counts[a], -ACTIONS.index(a)))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["spread"] = self.spread
        return {key: _json_number(value) for key, value in data.items()}


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    return value


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and population std that cannot overflow: finite values near 1e308 are scaled down first."""
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    if scale == 0.0 or not np.isfinite(scale):
        return (0.0, 0.0) if scale == 0.0 else (float("nan"), float("nan"))
    scaled = values / scale
    return float(scaled.mean()) * scale, float(scaled.std()) * scale


def model_stats(actions: np.ndarray, confidences: np.ndarray, thresholds: Thresholds) -> ModelStats:
    """Action shares and confidence figures (population std, linear percentiles) for one window."""
    n = int(actions.shape[0])
    if confidences.shape[0] != n:
        raise ValueError("actions and confidences must have the same length")
    counts = np.bincount(actions.astype(np.int64, copy=False), minlength=3)[:3] if n else np.zeros(3, np.int64)
    action_counts = {name: int(counts[i]) for i, name in enumerate(ACTIONS)}
    action_share = {name: (action_counts[name] / n if n else float("nan")) for name in ACTIONS}
    if n == 0:
        nan = float("nan")
        return ModelStats(0, action_counts, action_share, nan, nan, nan, nan, nan, nan)
    conf = confidences.astype(np.float64, copy=False)
    # The same percentiles from a sorted copy: numpy's SIMD sort and three look-ups beat one partition of a million
    # unsorted values (~20 vs ~35 ms).
    ordered = np.sort(conf)
    p10, p50, p90 = (sorted_percentile(ordered, q) for q in (10.0, 50.0, 90.0))
    in_zone = np.count_nonzero((conf >= thresholds.dead_zone_low) & (conf <= thresholds.dead_zone_high))
    mean, std = mean_std(conf)
    return ModelStats(
        n=n,
        action_counts=action_counts,
        action_share=action_share,
        conf_mean=mean,
        conf_std=std,
        p10=p10,
        p50=p50,
        p90=p90,
        dead_zone_share=in_zone / n,
    )


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def judge_stats(
    stats: ModelStats,
    thresholds: Thresholds,
    *,
    subject: str,
    scope: str,
    min_events: int | None,
    evidence: Mapping[str, RuleEvidence] | None = None,
) -> list[Finding]:
    """Apply every output-quality rule to one window. Too few events is itself a FAIL (fail-closed).

    With ``evidence`` (:func:`qtsafe.checks.rule_evidence.model_evidence`) the proportion rules (majority,
    HOLD dead zone) fail only a breach a bound establishes and report a point estimate past the limit as WARN
    (named in the gate's summary, never silently green); without evidence the estimate decides, as the
    runbooks' rule reads.
    """
    t = thresholds
    out: list[Finding] = []

    def fail(check: str, message: str) -> None:
        out.append(Finding(check, FAIL, message, subject, scope))

    def graded(check: str, message: str, found: list[RuleEvidence], *, percent: bool = True) -> None:
        bounds = ", ".join(ev.bound_text(percent=percent) for ev in found)
        if not found:
            fail(check, message + ")")
        elif all(ev.established for ev in found):
            fail(check, message + "; established: " + bounds + ")")
        else:
            out.append(Finding(check, WARN, message + "; past the limit by its estimate, not established: "
                               + bounds + ")", subject, scope))

    def rows(*keys: str) -> list[RuleEvidence]:
        return [evidence[k] for k in keys if k in evidence] if evidence else []

    if min_events is not None and stats.n < min_events:
        fail("insufficient_data", f"{subject}: only {stats.n} evaluated events in the {scope}, need {min_events}")
    if stats.n == 0:
        return out
    top = stats.top_action
    top_share = stats.action_share[top]
    if top_share > t.majority_max:
        graded("majority_bias", f"{subject}: {top} is {_pct(top_share)} of actions in the {scope} "
                                f"(limit {_pct(t.majority_max)}", rows("majority_bias"))
    if stats.conf_std < t.std_min:
        graded("collapsed_confidence", f"{subject}: confidence std {stats.conf_std:.4f} in the {scope} "
                                       f"is below {t.std_min} (collapsed output", rows("conf_std"), percent=False)
    if stats.spread < t.p10_p90_min:
        graded("narrow_range", f"{subject}: confidence P10-P90 spread {stats.spread:.4f} in the {scope} "
                               f"is below {t.p10_p90_min} (narrow range", rows("conf_spread"), percent=False)
    if stats.conf_std < t.constant_std or stats.p10 == stats.p90:
        fail("constant_output", f"{subject}: constant output in the {scope} (confidence ~{stats.p50:.4f}, "
                                f"std {stats.conf_std:.4f}, P10 {stats.p10:.4f} = P90 {stats.p90:.4f})"
             if stats.p10 == stats.p90 else
             f"{subject}: near-constant output in the {scope} (std {stats.conf_std:.4f} < {t.constant_std})")
    hold_share = stats.action_share["HOLD"]
    if hold_share > t.hold_dead_zone_max and stats.dead_zone_share > t.dead_zone_fraction:
        graded("hold_dead_zone", f"{subject}: HOLD is {_pct(hold_share)} in the {scope} with "
                                 f"{_pct(stats.dead_zone_share)} of confidences in "
                                 f"[{t.dead_zone_low}, {t.dead_zone_high}] (HOLD dead zone",
               rows("hold_share", "dead_zone_share"))
    if top_share > t.degenerate_action_max and stats.conf_std < t.degenerate_std:
        fail("degenerate", f"{subject}: degenerate: {top} is {_pct(top_share)} of actions with confidence "
                           f"std {stats.conf_std:.4f} in the {scope}")
    return out


def judge_presence(present: int, events: int, thresholds: Thresholds, *, subject: str) -> list[Finding]:
    """A model absent from the breakdown (not merely inactive) in too many of the window's events fails.

    ``present`` counts events whose breakdown has the model, active or not; ``events`` the window's
    evaluated events. A model that votes in a minority of events is not what the ensemble was weighted for,
    however many votes it has (issue 12 §5); like the inactive rule, it is hard evidence: a count, no estimate.
    """
    if events <= 0:
        return []
    share = present / events
    if share >= thresholds.presence_min:
        return []
    return [Finding("low_presence", FAIL,
                    f"{subject}: present in {present} of {events} events ({_pct(share)}, limit "
                    f"{_pct(thresholds.presence_min)}); absent from the model breakdown in the rest",
                    subject, "whole window")]


def judge_defects(defects: VoteDefects, thresholds: Thresholds, *, subject: str) -> list[Finding]:
    """Invalid confidences, confidences above 1, malformed votes and mostly-inactive models."""
    t = thresholds
    out: list[Finding] = []
    active = defects.present - defects.inactive
    if defects.present and defects.inactive / defects.present > t.inactive_max_fraction:
        out.append(Finding("mostly_inactive", FAIL,
                           f"{subject}: inactive in {defects.inactive} of {defects.present} events "
                           f"({_pct(defects.inactive / defects.present)}, limit {_pct(t.inactive_max_fraction)})",
                           subject, "whole window"))
    denominator = max(active, 1)
    if defects.invalid_total and defects.invalid_total / denominator > t.invalid_max_fraction:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(defects.invalid_confidence.items()) if v)
        out.append(Finding("invalid_confidence", FAIL,
                           f"{subject}: {defects.invalid_total} invalid confidence values ({kinds}) "
                           f"in {active} active votes", subject, "whole window"))
    if defects.above_one and defects.above_one / denominator > t.above_one_max_fraction:
        out.append(Finding("confidence_above_one", FAIL,
                           f"{subject}: {defects.above_one} confidences above 1 in {active} active votes "
                           "(calibration defect)", subject, "whole window"))
    if defects.bad_total and defects.bad_total / max(defects.present, 1) > t.bad_vote_max_fraction:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(defects.bad_votes.items()) if v)
        out.append(Finding("malformed_votes", FAIL,
                           f"{subject}: {defects.bad_total} malformed breakdown entries ({kinds})",
                           subject, "whole window"))
    return out
