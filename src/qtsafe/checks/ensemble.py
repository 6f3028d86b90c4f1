"""Ensemble agreement and hard disagreement from per-event vote counts among voting models."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from qtsafe.config import Thresholds
from qtsafe.findings import FAIL, WARN, Finding


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
