"""The relative rule over one window's telemetry: each model against the others' consensus and its own past."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from qtsafe.checks.consensus import (
    ConsensusFigures,
    ConsensusSeries,
    Kappa,
    RelativeEvidence,
    RelativeRule,
    fleiss_kappa,
    leave_one_out,
    relative_evidence,
    vote_matrix,
)
from qtsafe.config import Thresholds

# A window's telemetry as the reader builds it (qtsafe.telemetry.columns.Telemetry): ``evaluated``, ``votes`` and
# ``models`` (name -> columns with event_idx, action, shadow, n_valid). Checks import no telemetry code.
Telemetry = Any


def relative_rule(thresholds: Thresholds) -> RelativeRule:
    """The rule's parameters as the thresholds set them (defaults in docs/verdicts.md)."""
    t = thresholds
    return RelativeRule(margin_others=t.relative_margin_others, margin_baseline=t.relative_margin_baseline,
                        margin_no_baseline=t.relative_margin_no_baseline, alpha=t.relative_alpha,
                        min_sided=t.relative_min_sided)


@dataclasses.dataclass(frozen=True)
class RelativeWindow:
    """Every model's leave-one-out figures in one window, the relative verdicts and Fleiss' kappa.

    ``recent`` holds a model's verdict over the events of its last ``recent_window`` votes (the others judged
    over the same events), only for models with more votes than that (otherwise it repeats ``whole``).
    """

    figures: dict[str, ConsensusFigures]
    whole: dict[str, RelativeEvidence]
    recent: dict[str, tuple[int, RelativeEvidence]]  # name -> (first event index, evidence)
    baseline: dict[str, ConsensusFigures]
    kappa: Kappa
    voting: frozenset[str]
    alpha: float = 0.01

    def to_dict(self, name: str) -> dict[str, Any]:
        """One model's relative figures for the JSON report."""
        recent = self.recent.get(name)
        return {
            "whole": _evidence_dict(self.whole.get(name)),
            "recent": _evidence_dict(recent[1]) if recent is not None else None,
            "figures": self.figures[name].to_dict() if name in self.figures else None,
            "baseline": self.baseline[name].to_dict() if name in self.baseline else None,
            "alpha": self.alpha,
        }


def _evidence_dict(evidence: RelativeEvidence | None) -> dict[str, Any] | None:
    if evidence is None:
        return None
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in evidence.to_dict().items()}


def _series(telemetry: Telemetry) -> ConsensusSeries | None:
    if not telemetry.models or telemetry.evaluated == 0:
        return None
    return leave_one_out(vote_matrix(telemetry.evaluated, telemetry.models))


def judge_window(telemetry: Telemetry, thresholds: Thresholds, *, baseline: Telemetry | None = None,
                 judged: Sequence[str] | None = None) -> RelativeWindow:
    """Leave-one-out figures of every model in ``telemetry`` and the relative verdicts of ``judged`` (default all).

    Shadow models are scored against the voting models' consensus and are never part of anyone's consensus
    (:func:`qtsafe.checks.consensus.vote_matrix` decides who votes, as judge.py does). One vectorised pass per
    window; the recent verdicts re-count the same codes over a suffix of the events.
    """
    rule = relative_rule(thresholds)
    kappa = fleiss_kappa(telemetry.votes)
    series = _series(telemetry)
    if series is None:
        return RelativeWindow({}, {}, {}, {}, kappa, frozenset(), rule.alpha)
    voting = frozenset(telemetry.models) - {n for n, c in telemetry.models.items()
                                            if c.shadow > 0 and c.shadow * 2 >= max(c.n_valid, 1)}
    figures = {name: series.figures(name) for name in series.names}
    before: dict[str, ConsensusFigures] = {}
    base_series = _series(baseline) if baseline is not None else None
    if base_series is not None:
        before = {name: base_series.figures(name) for name in base_series.names}
    whole = {ev.name: ev for ev in relative_evidence(figures, before if baseline is not None else None, rule)}
    recent: dict[str, tuple[int, RelativeEvidence]] = {}
    tail = thresholds.recent_window
    for name in judged if judged is not None else series.names:
        if name not in figures or telemetry.models[name].n_valid <= tail:
            continue
        start = series.recent_start(name, tail)
        window = {other: series.figures(other, start) for other in series.names}
        found = relative_evidence(window, before if baseline is not None else None, rule)
        recent[name] = (start, next(ev for ev in found if ev.name == name))
    return RelativeWindow(figures, whole, recent, before, kappa, voting, rule.alpha)


def standout(figures: Mapping[str, ConsensusFigures], among: frozenset[str], *, margin: float,
             key: str = "hard_rate", highest: bool = True) -> tuple[str, float, float] | None:
    """The model whose ``key`` (hard_rate or agreement) stands out from every other by at least ``margin``.

    Returns (name, its value, the nearest other's value), or None when no single model stands out (a fleet-wide
    shift, or fewer than two models with figures).
    """
    found = ((float(getattr(f, key)), n) for n, f in figures.items() if n in among)
    values = sorted(((v, n) for v, n in found if v == v), reverse=highest)
    if len(values) < 2:
        return None
    (top, name), (second, _) = values[0], values[1]
    if abs(top - second) < margin:
        return None
    return name, top, second
