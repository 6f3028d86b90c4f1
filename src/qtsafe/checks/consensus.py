"""Each model against the others: leave-one-out consensus, Fleiss' kappa and the relative rule.

Per event, a model's vote is compared with the plurality of the *other* voting models' actions in
that event. Events where the others tie, or where fewer than two others vote, give no consensus and
are skipped and counted. A model's figures over any range of events follow from one int8 outcome
code per event, so the whole window and the recent window cost one pass each. The rule that uses them
(:func:`judge_relative`) fails a model whose hard disagreement with the others is far above theirs and
above its own figure before the cutover, established with intervals (see docs/verdicts.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qtsafe.checks.dependence import critical_z, effective_sample_size, wilson_bounds
from qtsafe.findings import FAIL, Finding
from qtsafe.votes import BUY, HOLD, SELL

NO_VOTE = -1

# Per-event outcome of one model against the others' consensus (int8 codes).
ABSENT, FEW_OTHERS, TIE, AGREE_SIDE, AGREE_HOLD, SOFT, HARD = range(7)
OUTCOME_NAMES = ("absent", "few_others", "tie", "agree_side", "agree_hold", "soft", "hard")


@dataclasses.dataclass(frozen=True)
class VoteMatrix:
    """Actions of every model in every event: ``actions[e, m]`` is an action code or NO_VOTE.

    ``voting`` says whose votes count towards the others' consensus: a (models,) or (events, models)
    boolean array. Shadow models are scored against the voters but are never part of anyone's consensus.
    """

    names: tuple[str, ...]
    actions: np.ndarray
    voting: np.ndarray

    def __post_init__(self) -> None:
        if self.actions.ndim != 2 or self.actions.shape[1] != len(self.names):
            raise ValueError("actions must be (events, models) with one column per name")
        np.broadcast_to(self.voting, self.actions.shape)  # raises on a shape that does not fit


def vote_matrix(events: int, columns: Mapping[str, Any], *, shadow: Mapping[str, bool] | None = None) -> VoteMatrix:
    """Build the matrix from per-model columns (``event_idx`` and ``action`` arrays, as the reader gives).

    ``columns`` maps a model name to an object with ``event_idx`` and ``action`` (e.g. ModelColumns);
    ``shadow`` says which models do not vote. Without it a model is a shadow when at least half of its
    valid votes were shadow votes (the rule judge.py uses), which needs a ``shadow`` count on the columns.
    """
    names = tuple(sorted(columns))
    actions = np.full((events, len(names)), NO_VOTE, dtype=np.int8)
    voting = np.ones(len(names), dtype=bool)
    for j, name in enumerate(names):
        col = columns[name]
        actions[np.asarray(col.event_idx, dtype=np.int64), j] = np.asarray(col.action, dtype=np.int8)
        if shadow is not None:
            voting[j] = not shadow.get(name, False)
        else:
            n_valid = int(np.asarray(col.action).shape[0])
            shadow_votes = int(getattr(col, "shadow", 0))
            voting[j] = not (shadow_votes > 0 and shadow_votes * 2 >= max(n_valid, 1))
    return VoteMatrix(names, actions, voting)


@dataclasses.dataclass(frozen=True)
class ConsensusSeries:
    """One outcome code per model per event (``codes[m, e]``, see OUTCOME_NAMES) and the consensus itself."""

    names: tuple[str, ...]
    codes: np.ndarray  # (models, events) int8
    consensus: np.ndarray  # (models, events) int8: the others' plurality action, NO_VOTE where none

    @property
    def events(self) -> int:
        return int(self.codes.shape[1])

    def figures(self, name: str, start: int = 0, stop: int | None = None) -> ConsensusFigures:
        """Counts and effective sizes over events [start, stop) for one model."""
        j = self.names.index(name)
        codes = self.codes[j, start:stop]
        counts = np.bincount(codes, minlength=len(OUTCOME_NAMES))
        sided = codes[(codes == AGREE_SIDE) | (codes == HARD)]
        judged = codes[codes >= AGREE_SIDE]
        return ConsensusFigures(
            name=name,
            present=int(codes.shape[0] - counts[ABSENT]),
            few_others=int(counts[FEW_OTHERS]),
            ties=int(counts[TIE]),
            judged=int(judged.shape[0]),
            agree=int(counts[AGREE_SIDE] + counts[AGREE_HOLD]),
            sided=int(sided.shape[0]),
            hard=int(counts[HARD]),
            n_eff_hard=effective_sample_size(sided == HARD),
            n_eff_agree=effective_sample_size(judged <= AGREE_HOLD),
        )

    def recent_start(self, name: str, votes: int) -> int:
        """The event index where the model's last ``votes`` votes begin (0 if it has fewer)."""
        j = self.names.index(name)
        present = np.flatnonzero(self.codes[j] != ABSENT)
        return int(present[-votes]) if 0 < votes <= present.shape[0] else 0


@dataclasses.dataclass(frozen=True)
class ConsensusFigures:
    """One model against the others' consensus over a range of events.

    ``judged`` events had a consensus (no tie, two or more other voters) and a vote from the model;
    ``agree`` of them matched it. ``sided`` are judged events where both the model and the consensus
    took a side (BUY or SELL); ``hard`` of them were opposite sides. The hard rate is hard / sided:
    "when both take a side, how often the opposite one". ``n_eff_*`` are the effective sizes of the
    0/1 series behind each rate (see qtsafe.checks.dependence).
    """

    name: str
    present: int
    few_others: int
    ties: int
    judged: int
    agree: int
    sided: int
    hard: int
    n_eff_hard: float
    n_eff_agree: float

    @property
    def agreement(self) -> float:
        return self.agree / self.judged if self.judged else float("nan")

    @property
    def hard_rate(self) -> float:
        return self.hard / self.sided if self.sided else float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["agreement"] = _json(self.agreement)
        data["hard_rate"] = _json(self.hard_rate)
        return data


def _json(value: float) -> float | None:
    return value if np.isfinite(value) else None


def leave_one_out(matrix: VoteMatrix) -> ConsensusSeries:
    """Every model's vote against the plurality of the other voting models, event by event (vectorised).

    Work is done on contiguous per-model rows (models, events) in int8: a handful of passes over the
    events per model, no per-event Python code.
    """
    actions = np.ascontiguousarray(matrix.actions.T)
    models, events = actions.shape
    voting = np.ascontiguousarray(np.broadcast_to(matrix.voting, matrix.actions.shape).T) & (actions >= 0)
    if models > 120:
        raise ValueError("more than 120 models do not fit the int8 vote counts")
    hot = [[(actions[j] == k) & voting[j] for j in range(models)] for k in range(3)]
    totals = [np.sum(hot[k], axis=0, dtype=np.int8) if models else np.zeros(events, np.int8) for k in range(3)]
    codes = np.empty((models, events), dtype=np.int8)
    consensus = np.empty((models, events), dtype=np.int8)
    for j in range(models):
        mine = actions[j]
        buy, sell, hold = (totals[k] - hot[k][j].view(np.int8) for k in range(3))
        top = np.maximum(np.maximum(buy, sell), hold)
        at_buy, at_sell = buy == top, sell == top
        tied = (at_buy.view(np.int8) + at_sell.view(np.int8) + (hold == top).view(np.int8)) > 1
        few = (buy + sell + hold) < 2
        winner = np.where(at_buy, np.int8(BUY), np.where(at_sell, np.int8(SELL), np.int8(HOLD)))
        has = ~(few | tied)
        consensus[j] = np.where(has, winner, np.int8(NO_VOTE))
        same = has & (mine == winner)
        sided = (mine < HOLD) & (winner < HOLD)
        code = np.where(few, np.int8(FEW_OTHERS), np.where(tied, np.int8(TIE), np.int8(SOFT)))
        code[same & sided] = AGREE_SIDE
        code[same & (mine == HOLD)] = AGREE_HOLD
        code[has & sided & ~same & (mine >= 0)] = HARD
        code[mine < 0] = ABSENT
        codes[j] = code
    return ConsensusSeries(matrix.names, codes, consensus)


@dataclasses.dataclass(frozen=True)
class Kappa:
    """Fleiss' kappa over the events with two or more raters; raters may vary from event to event."""

    events: int
    raters_min: int
    raters_max: int
    observed: float  # P-bar: mean per-event agreement among pairs of raters
    expected: float  # P-e: chance agreement from the pooled action shares
    kappa: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (_json(v) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def fleiss_kappa(counts: np.ndarray) -> Kappa:
    """Fleiss (1971) kappa from per-event category counts (events, categories), e.g. Telemetry.votes.

    With a varying number of raters n_i, the standard extension is used: P_i = (sum_j n_ij^2 - n_i) /
    (n_i (n_i - 1)) per event, P-bar their unweighted mean, p_j = sum_i n_ij / sum_i n_i pooled over all
    ratings, P-e = sum_j p_j^2 and kappa = (P-bar - P-e) / (1 - P-e). With equal n_i it is exactly
    Fleiss' formula. Events with fewer than two raters carry no agreement and are left out.
    """
    c = np.asarray(counts)
    if c.ndim != 2:
        raise ValueError("counts must be (events, categories)")
    columns = [c[:, k].astype(np.float64) for k in range(c.shape[1])]
    raters = sum(columns, np.zeros(c.shape[0]))
    keep = raters >= 2
    n = int(np.count_nonzero(keep))
    if n == 0:
        nan = float("nan")
        return Kappa(0, 0, 0, nan, nan, nan)
    columns = [col[keep] for col in columns]
    raters = raters[keep]
    squares = sum((col * col for col in columns), np.zeros(n))
    observed = float(((squares - raters) / (raters * (raters - 1))).mean())
    shares = np.array([col.sum() for col in columns]) / raters.sum()
    expected = float(np.square(shares).sum())
    kappa = (observed - expected) / (1.0 - expected) if expected < 1.0 else float("nan")
    return Kappa(n, int(raters.min()), int(raters.max()), observed, expected, kappa)


@dataclasses.dataclass(frozen=True)
class RelativeRule:
    """Parameters of the relative (leave-one-out) hard-disagreement rule; defaults argued in docs/verdicts.md.

    A model fails when, at one-sided confidence 1 - alpha, its hard rate is above (a) the rate of the
    majority of the other models by more than ``margin_others`` and (b) its own rate before the cutover
    by more than ``margin_baseline``. Without a usable baseline only (a) is judged, with the stricter
    ``margin_no_baseline``. Figures with fewer than ``min_sided`` sided events are not judged.
    """

    margin_others: float = 0.10
    margin_baseline: float = 0.10
    margin_no_baseline: float = 0.20
    alpha: float = 0.01
    min_sided: int = 30


@dataclasses.dataclass(frozen=True)
class RelativeEvidence:
    """What the relative rule saw for one model: estimate, bounds, the references and the verdict."""

    name: str
    sided: int
    hard_rate: float
    low: float  # one-sided lower bound of the model's hard rate
    others: tuple[tuple[str, float, float], ...]  # (name, rate, upper bound) of each qualifying other model
    reference: float  # upper bound of the majority of the others
    baseline_rate: float | None
    baseline_high: float | None
    limit: float  # the value ``low`` had to exceed
    violated: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["others"] = [{"name": n, "hard_rate": r, "high": h} for n, r, h in self.others]
        return data


def _bounds(figures: ConsensusFigures, z: float) -> tuple[float, float]:
    return wilson_bounds(figures.hard_rate * figures.n_eff_hard, figures.n_eff_hard, z)


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def relative_evidence(
    window: Mapping[str, ConsensusFigures],
    baseline: Mapping[str, ConsensusFigures] | None,
    rule: RelativeRule | None = None,
) -> tuple[RelativeEvidence, ...]:
    """Judge every model in ``window`` against the others there and against itself in ``baseline``."""
    r = rule or RelativeRule()
    z = critical_z(r.alpha)
    usable = {name: f for name, f in window.items() if f.sided >= r.min_sided}
    out: list[RelativeEvidence] = []
    for name in sorted(window):
        mine = window[name]
        if name not in usable:
            out.append(RelativeEvidence(name, mine.sided, mine.hard_rate, float("nan"), (), float("nan"), None, None,
                                        float("nan"), False,
                                        f"only {mine.sided} sided events (need {r.min_sided}): not judged"))
            continue
        low, _ = _bounds(mine, z)
        others = tuple((o, f.hard_rate, _bounds(f, z)[1]) for o, f in sorted(usable.items()) if o != name)
        if not others:
            out.append(RelativeEvidence(name, mine.sided, mine.hard_rate, low, (), float("nan"), None, None,
                                        float("nan"), False, "no other model with enough sided events"))
            continue
        highs = sorted(h for _, _, h in others)
        reference = highs[len(highs) // 2]  # a strict majority of the others are at or below it
        base = baseline.get(name) if baseline is not None else None
        if base is not None and base.sided >= r.min_sided:
            base_high = _bounds(base, z)[1]
            limit = max(reference + r.margin_others, base_high + r.margin_baseline)
            note = "judged against the others and its own figure before the cutover"
            out.append(RelativeEvidence(name, mine.sided, mine.hard_rate, low, others, reference, base.hard_rate,
                                        base_high, limit, low > limit, note))
        else:
            limit = reference + r.margin_no_baseline
            note = ("no baseline before the cutover" if base is None else
                    f"baseline has only {base.sided} sided events") + "; stricter margin against the others"
            out.append(RelativeEvidence(name, mine.sided, mine.hard_rate, low, others, reference, None, None,
                                        limit, low > limit, note))
    return tuple(out)


def judge_relative(evidence: Sequence[RelativeEvidence], *, scope: str = "whole window",
                   severity: str = FAIL) -> list[Finding]:
    """One finding per model whose relative evidence is violated, in the words operators read."""
    out: list[Finding] = []
    for ev in evidence:
        if not ev.violated:
            continue
        rates = [rate for _, rate, _ in ev.others]
        low_rate, high_rate = _pct(min(rates)), _pct(max(rates))
        if len(rates) == 1:
            others = f"other {low_rate}"
        else:
            others = f"others {low_rate}" if low_rate == high_rate else f"others {low_rate[:-2]}-{high_rate}"
        before = (f"; {ev.name} before the cutover {_pct(ev.baseline_rate)}" if ev.baseline_rate is not None
                  else "; no baseline before the cutover")
        out.append(Finding(
            "relative_hard_disagree", severity,
            f"{ev.name}: BUY/SELL against the others' consensus in {_pct(ev.hard_rate)} of {ev.sided} events "
            f"where both took a side ({others}{before}; lower bound {_pct(ev.low)} above {_pct(ev.limit)})",
            ev.name, scope))
    return out


__all__ = [
    "NO_VOTE",
    "OUTCOME_NAMES",
    "ConsensusFigures",
    "ConsensusSeries",
    "Kappa",
    "RelativeEvidence",
    "RelativeRule",
    "VoteMatrix",
    "fleiss_kappa",
    "judge_relative",
    "leave_one_out",
    "relative_evidence",
    "vote_matrix",
]
