"""Canary against baseline on the same events: exact McNemar test, paired interval, non-inferiority verdict.

Inputs are per-event hit codes (1 hit, 0 miss, -1 not scored) of two directions on the same events,
e.g. from :func:`qtsafe.checks.outcomes.hits`. Formulas and reasons: docs/verdicts.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from qtsafe.checks.dependence import critical_z, effective_sample_size, wilson_bounds
from qtsafe.checks.special import binomial_cdf, binomial_sf
from qtsafe.status import Status


def mcnemar_exact(canary_only: int, baseline_only: int) -> tuple[float, float]:
    """Exact McNemar test on the discordant pairs: (two-sided p, one-sided p that the canary is worse).

    Under "equally good" each discordant pair is the canary's hit with probability 1/2, so canary_only ~
    Binomial(canary_only + baseline_only, 1/2). Two-sided p = min(1, 2 * the smaller tail).
    """
    discordant = canary_only + baseline_only
    if discordant == 0:
        return 1.0, 1.0
    lower = binomial_cdf(canary_only, discordant, 0.5)
    upper = binomial_sf(canary_only - 1, discordant, 0.5)
    return min(1.0, 2.0 * min(lower, upper)), lower


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """Canary against baseline on the same events, both with a scored direction.

    ``both`` hit, ``canary_only`` hit, ``baseline_only`` hit, ``neither`` hit; the difference is
    canary hit rate minus baseline hit rate. ``n_eff`` is the effective size of the per-pair difference
    series (event order), used to widen the interval; the exact McNemar p-values treat pairs as independent.
    """

    pairs: int
    both: int
    canary_only: int
    baseline_only: int
    neither: int
    n_eff: float
    p_two_sided: float
    p_canary_worse: float

    @property
    def canary_rate(self) -> float:
        return (self.both + self.canary_only) / self.pairs if self.pairs else float("nan")

    @property
    def baseline_rate(self) -> float:
        return (self.both + self.baseline_only) / self.pairs if self.pairs else float("nan")

    @property
    def difference(self) -> float:
        return (self.canary_only - self.baseline_only) / self.pairs if self.pairs else float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("canary_rate", "baseline_rate", "difference"):
            value = getattr(self, key)
            data[key] = value if math.isfinite(value) else None
        return data


def paired_comparison(canary_hits: np.ndarray, baseline_hits: np.ndarray) -> PairedComparison:
    """Pair per-event hit codes (from :func:`hits`) of the canary and the baseline; only events both scored."""
    c = np.asarray(canary_hits)
    b = np.asarray(baseline_hits)
    if c.shape != b.shape:
        raise ValueError("canary and baseline hits must be aligned on the same events")
    keep = (c >= 0) & (b >= 0)
    c, b = c[keep].astype(bool), b[keep].astype(bool)
    both = int(np.count_nonzero(c & b))
    canary_only = int(np.count_nonzero(c & ~b))
    baseline_only = int(np.count_nonzero(~c & b))
    pairs = int(c.shape[0])
    n_eff = effective_sample_size(pair_differences(c, b)) if pairs else 0.0
    return paired_from_counts(both, canary_only, baseline_only, pairs - both - canary_only - baseline_only, n_eff)


def pair_differences(canary_hit: np.ndarray, baseline_hit: np.ndarray) -> np.ndarray:
    """The per-pair difference series (canary hit - baseline hit: -1, 0 or 1) whose effective size widens the
    interval; both arguments are booleans of scored pairs, in event order."""
    return np.asarray(canary_hit, dtype=np.int8) - np.asarray(baseline_hit, dtype=np.int8)


def paired_from_counts(both: int, canary_only: int, baseline_only: int, neither: int,
                       n_eff: float) -> PairedComparison:
    """A :class:`PairedComparison` from its four cells and the effective size of the difference series (e.g.
    counters kept by the monitor as outcomes resolve); the McNemar p-values are computed here."""
    cells = (both, canary_only, baseline_only, neither)
    if min(cells) < 0:
        raise ValueError(f"paired cells must be non-negative, got {cells}")
    pairs = sum(cells)
    if pairs and not 0.0 < n_eff <= pairs:
        raise ValueError(f"n_eff must be within (0, {pairs}], got {n_eff}")
    p_two, p_worse = mcnemar_exact(canary_only, baseline_only)
    return PairedComparison(pairs, both, canary_only, baseline_only, neither, float(n_eff) if pairs else 0.0,
                            p_two, p_worse)


def paired_difference_bounds(comparison: PairedComparison, z: float) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval (his method 10) for the paired difference canary - baseline,
    with every cell scaled by n_eff / pairs (a design effect for dependent events)."""
    cmp = comparison
    if cmp.pairs == 0 or math.isinf(z):
        return -1.0, 1.0
    k = cmp.n_eff / cmp.pairs
    a, b, c, d = cmp.both * k, cmp.canary_only * k, cmp.baseline_only * k, cmp.neither * k
    n = cmp.n_eff
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_bounds(a + b, n, z)
    l2, u2 = wilson_bounds(a + c, n, z)
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    # Newcombe's correlation estimate with his continuity correction: ad - bc is reduced by n/2 when
    # positive (and taken as 0 in between), as in his method 10 and Fagerland et al. (2017), ch. 8.
    cross = a * d - b * c
    cross = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = cross / math.sqrt(denominator) if denominator > 0 else 0.0
    delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    epsilon = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    theta = p1 - p2
    return max(theta - delta, -1.0), min(theta + epsilon, 1.0)


@dataclasses.dataclass(frozen=True)
class NonInferiority:
    """"The canary is not worse than the baseline by more than ``margin`` at ``confidence``": the verdict."""

    status: Status  # PASS, FAIL or WAIT
    difference: float
    low: float
    high: float
    margin: float
    confidence: float
    pairs: int
    needed_more: int | None  # paired outcomes still needed (WAIT); None when no count would settle it
    message: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        for key in ("difference", "low", "high"):
            data[key] = data[key] if math.isfinite(data[key]) else None
        return data


def non_inferiority(
    comparison: PairedComparison,
    *,
    margin: float = 0.02,
    confidence: float = 0.95,
    min_pairs: int = 30,
    planning_discordance: float = 0.3,
    max_needed: int = 10_000_000,
) -> NonInferiority:
    """PASS when the lower one-sided bound of canary - baseline is above -margin; FAIL when the upper one
    is below -margin (worse by more than the margin, established); otherwise WAIT with an estimate of
    how many more paired outcomes would settle it. Fewer than ``min_pairs`` pairs is always WAIT.

    Needed pairs: the bound's distance from the estimate shrinks as 1/sqrt(n), so the bound reaches
    -margin at n* = pairs * (h / g)^2, h the current distance from the estimate to the bound that
    must cross and g the estimate's distance from -margin. With no pairs yet, n* = z^2 psi / margin^2
    (psi = ``planning_discordance``, the expected share of discordant pairs, difference 0).
    """
    if not 0.0 < margin < 1.0 or not 0.5 < confidence < 1.0:
        raise ValueError("need 0 < margin < 1 and 0.5 < confidence < 1")
    z = critical_z(1.0 - confidence)
    cmp = comparison
    low, high = paired_difference_bounds(cmp, z)
    d = cmp.difference
    pct = f"{confidence * 100:g} %"
    words = (f"canary {_pct(cmp.canary_rate)} vs baseline {_pct(cmp.baseline_rate)} right on {cmp.pairs} "
             f"paired outcomes (difference {_signed(d)}, {pct} bounds {_signed(low)} to {_signed(high)}, "
             f"margin {_pct(margin)})") if cmp.pairs else "no paired outcomes yet"
    if cmp.pairs >= min_pairs and low > -margin:
        return NonInferiority(Status.PASS, d, low, high, margin, confidence, cmp.pairs, 0,
                              f"not worse than the baseline by more than {_pct(margin)}: {words}")
    if cmp.pairs >= min_pairs and high < -margin:
        return NonInferiority(Status.FAIL, d, low, high, margin, confidence, cmp.pairs, 0,
                              f"worse than the baseline by more than {_pct(margin)}: {words}")
    target: int | None
    if cmp.pairs == 0:
        target = math.ceil(z * z * planning_discordance / (margin * margin))
    else:
        h, gap = (d - low, d + margin) if d > -margin else (high - d, -margin - d)
        target = math.ceil(cmp.pairs * (h / gap) ** 2) if gap > 0 else None
    if target is None or target > max_needed:
        return NonInferiority(Status.WAIT, d, low, high, margin, confidence, cmp.pairs, None,
                              f"cannot tell yet: {words}; the estimate sits at the margin")
    more = max(target - cmp.pairs, min_pairs - cmp.pairs, 1)
    return NonInferiority(Status.WAIT, d, low, high, margin, confidence, cmp.pairs, more,
                          f"cannot tell yet: {words}; needs about {more} more resolved outcomes")


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %" if math.isfinite(value) else "n/a"


def _signed(value: float) -> str:
    return f"{value * 100:+.1f} pts" if math.isfinite(value) else "n/a"


__all__ = [
    "NonInferiority",
    "PairedComparison",
    "mcnemar_exact",
    "non_inferiority",
    "pair_differences",
    "paired_comparison",
    "paired_difference_bounds",
    "paired_from_counts",
]
