"""Ensemble agreement and hard disagreement from per-event vote counts among voting models."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from qtsafe.checks.rule_evidence import RuleEvidence, mean_rule, proportion
from qtsafe.config import Thresholds
from qtsafe.findings import FAIL, OK, WARN, Finding


@dataclasses.dataclass(frozen=True)
class EnsembleFigures:
    """Agreement = mean over events of the plurality vote's share among voting models (active, not
    shadow, not a pseudo-model); hard disagree = share of events with both a BUY and a SELL vote.
    Only events with at least two voting models are counted: one voter always agrees with itself."""

    events: int
    agreement: float
    hard_disagree: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def ensemble_figures(votes: np.ndarray) -> EnsembleFigures:
    """``votes`` is (events, 3) counts of BUY/SELL/HOLD among voting models per event."""
    if votes.size == 0:
        return EnsembleFigures(0, float("nan"), float("nan"))
    counts = votes.astype(np.int64, copy=False)
    voters = counts.sum(axis=1)
    judged = voters >= 2
    n = int(np.count_nonzero(judged))
    if n == 0:
        return EnsembleFigures(0, float("nan"), float("nan"))
    share = counts[judged].max(axis=1) / voters[judged]
    hard = (counts[judged, 0] > 0) & (counts[judged, 1] > 0)
    return EnsembleFigures(n, float(share.mean()), float(np.count_nonzero(hard) / n))


def judge_ensemble(figures: EnsembleFigures, thresholds: Thresholds, *, severity: str = WARN) -> list[Finding]:
    """Agreement outside [min, max] or hard disagree above max. WAIT-level for the scoreboard,
    FAIL-level (a violation) for the monitor: the caller chooses ``severity``."""
    t = thresholds
    out: list[Finding] = []
    if figures.events == 0:
        out.append(Finding("ensemble_no_evidence", severity,
                           "ensemble: no event had two or more voting models; agreement cannot be judged",
                           "ensemble", "whole window"))
        return out
    if not t.agreement_min <= figures.agreement <= t.agreement_max:
        out.append(Finding("ensemble_agreement", severity,
                           f"ensemble: agreement {figures.agreement * 100:.1f} % is outside "
                           f"{t.agreement_min * 100:.0f}-{t.agreement_max * 100:.0f} % over {figures.events} events",
                           "ensemble", "whole window"))
    if figures.hard_disagree > t.hard_disagree_max:
        out.append(Finding("hard_disagree", severity,
                           f"ensemble: BUY and SELL in the same event in {figures.hard_disagree * 100:.1f} % of "
                           f"{figures.events} events (limit {t.hard_disagree_max * 100:.0f} %)",
                           "ensemble", "whole window"))
    return out


__all__ = ["FAIL", "WARN", "EnsembleFigures", "ensemble_figures", "judge_ensemble"]


def ensemble_evidence(votes: np.ndarray, thresholds: Thresholds, *, alpha: float) -> dict[str, RuleEvidence]:
    """Bounds for the ensemble rules over the events with two or more voters, n_eff from each series.

    ``agreement_min`` / ``agreement_max``: normal bounds on the mean plurality share; ``hard_disagree``:
    Wilson bounds on the share of events with both a BUY and a SELL vote. Empty with no such event.
    """
    t = thresholds
    if votes.size == 0:
        return {}
    counts = votes.astype(np.int64, copy=False)
    voters = counts.sum(axis=1)
    judged = voters >= 2
    if not np.any(judged):
        return {}
    share = counts[judged].max(axis=1) / voters[judged]
    hard = (counts[judged, 0] > 0) & (counts[judged, 1] > 0)
    scope = "whole window"
    return {
        "agreement_min": mean_rule("agreement (low)", scope, share, t.agreement_min, "min", alpha),
        "agreement_max": mean_rule("agreement (high)", scope, share, t.agreement_max, "max", alpha),
        "hard_disagree": proportion("hard disagree", scope, hard, t.hard_disagree_max, "max", alpha),
    }


def judge_ensemble_evidence(figures: EnsembleFigures, evidence: Mapping[str, RuleEvidence],
                            thresholds: Thresholds, *, drivers: Mapping[str, str] | None = None) -> list[Finding]:
    """The scoreboard's ensemble rules with evidence: WARN (WAIT) when a bound establishes the breach.

    A breach by the estimate alone is recorded as an OK-level finding that says so (shown, not a WAIT).
    ``drivers`` maps a rule (``agreement``, ``hard_disagree``) to a clause naming the model behind it.
    """
    t = thresholds
    named = drivers or {}
    out: list[Finding] = []
    if figures.events == 0:
        return judge_ensemble(figures, t, severity=WARN)

    def add(check: str, message: str, ev: RuleEvidence, driver: str) -> None:
        if ev.established:
            out.append(Finding(check, WARN, f"{message}; established: {ev.bound_text()}){driver}",
                               "ensemble", "whole window"))
        elif ev.crossed:
            out.append(Finding(check, OK, f"{message}; past the limit by its estimate, not established: "
                               f"{ev.bound_text()}){driver}", "ensemble", "whole window"))

    agreement = (f"ensemble: agreement {figures.agreement * 100:.1f} % is outside "
                 f"{t.agreement_min * 100:.0f}-{t.agreement_max * 100:.0f} % over {figures.events} events (")
    low, high = evidence.get("agreement_min"), evidence.get("agreement_max")
    if low is not None and low.crossed:
        add("ensemble_agreement", agreement + "below the range", low, named.get("agreement", ""))
    if high is not None and high.crossed:
        add("ensemble_agreement", agreement + "above the range", high, "")
    hard = evidence.get("hard_disagree")
    if hard is not None:
        add("hard_disagree", f"ensemble: BUY and SELL in the same event in {figures.hard_disagree * 100:.1f} % of "
                             f"{figures.events} events (limit {t.hard_disagree_max * 100:.0f} %", hard,
            named.get("hard_disagree", ""))
    return out


__all__ += ["ensemble_evidence", "judge_ensemble_evidence"]
