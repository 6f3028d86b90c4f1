"""Evidence under autocorrelation and repeated looks: effective sample sizes, intervals, alpha spending.

A rule asks "is the statistic beyond its limit?". Over a few hundred market events the answer must
come from an interval, and the interval must be as wide as the *dependent* data warrant: a regime
makes neighbouring events alike, so n correlated events carry the evidence of fewer independent ones.

- :func:`effective_sample_size`: Geyer's initial positive (monotone) sequence estimator of the
  integrated autocorrelation time, n_eff = n / tau, clipped to [1, n].
- :func:`beyond_limit`: Wilson score bounds for a proportion with n_eff in place of n (a Kish
  design effect), compared one-sided with the limit; :func:`mean_beyond_limit` the same for the mean
  of a real-valued series (ensemble agreement is a mean of per-event plurality shares).
- :func:`std_beyond_limit` / :func:`spread_beyond_limit`: bootstrap-free bounds for the confidence
  std (asymptotic variance of the sample variance) and for P90-P10 (distribution-free order-statistic
  bounds of each quantile), each with its own effective sample size.
- :class:`AlphaSchedule`: the false-alarm budget of a watch split over its planned checks
  (Bonferroni or O'Brien-Fleming-shaped spending), so the family-wise rate stays at most ``alpha``.

Pure numpy; quantiles of the normal law come from the standard library (``statistics.NormalDist``).
The formulas and the reasons are in docs/verdicts.md.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Literal, NamedTuple

import numpy as np

Side = Literal["max", "min"]
_NORMAL = NormalDist()


def normal_quantile(p: float) -> float:
    """The standard normal quantile (inverse CDF) for 0 < p < 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a probability strictly between 0 and 1 is needed, got {p!r}")
    return _NORMAL.inv_cdf(p)


def autocorrelation(values: np.ndarray) -> np.ndarray:
    """Sample autocorrelation at lags 0..n-1 (biased estimator: divided by n at every lag), via FFT."""
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return np.empty(0)
    centred = x - x.mean()
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    if acov[0] <= 0.0:
        out = np.zeros(n)
        out[0] = 1.0
        return out
    return acov / acov[0]


_DIRECT_MAX = 16_384  # above this many values, batch means first (see effective_sample_size)
_BLOCKS = 8_192


def _integrated_time(x: np.ndarray) -> float:
    """Geyer's initial monotone sequence estimate of tau = 1 + 2 sum_k rho_k (at least 1e-12)."""
    rho = autocorrelation(x)
    pairs = x.shape[0] // 2
    gamma = rho[0 : 2 * pairs : 2] + rho[1 : 2 * pairs : 2]
    nonpositive = np.flatnonzero(gamma <= 0.0)
    kept = gamma[: nonpositive[0]] if nonpositive.size else gamma
    kept = np.minimum.accumulate(kept)  # initial monotone sequence: noise at long lags cannot add evidence
    return max(-1.0 + 2.0 * float(kept.sum()), 1e-12)


def effective_sample_size(values: np.ndarray) -> float:
    """n / tau, tau = -1 + 2 * sum of Geyer's initial monotone sequence of paired autocorrelations.

    Up to 16,384 values tau comes from the series itself. Above that, the series is first cut into
    8,192 equal batches (the remainder dropped) and tau is estimated from the batch means y:
    Var(mean) = Var(y) tau_y / k, so tau_x = b Var(y) tau_y / Var(x), b the batch length and k the
    number of batches. It gives the same answer for independent data (tau 1) and keeps the cost O(n)
    (no FFT of a million points) while lags up to ~b * k / 2 still count.

    A series with no variance (all equal) carries no information about its dependence; it is taken
    as independent (n_eff = n), so a shared total failure such as every vote HOLD is not excused as a
    "regime". The result is clipped to [1, n]: negative correlation never claims more than n events.
    """
    x = np.asarray(values, dtype=np.float64)
    n = int(x.shape[0])
    if n < 4:
        return float(n)
    if not np.all(np.isfinite(x)):
        raise ValueError("effective_sample_size needs finite values")
    variance = float(x.var())
    if variance == 0.0 or float(np.ptp(x)) == 0.0:
        return float(n)
    if n <= _DIRECT_MAX:
        tau = _integrated_time(x)
    else:
        batch = n // _BLOCKS
        means = x[: batch * _BLOCKS].reshape(_BLOCKS, batch).mean(axis=1)
        batch_var = float(means.var())
        if batch_var == 0.0:
            return float(n)
        tau = batch * batch_var * _integrated_time(means) / variance
    if tau <= 0.0:
        return float(n)
    return float(min(max(n / tau, 1.0), n))


class Evidence(NamedTuple):
    """A statistic, its bounds and whether the evidence puts it beyond the limit.

    ``low`` and ``high`` are each a one-sided bound at confidence 1 - alpha (together a two-sided
    1 - 2 alpha interval); a "max" rule is violated when ``low`` is above the limit, a "min" rule
    when ``high`` is below it. With no data the estimate is NaN and nothing is violated: too little
    data is judged by the minimum-events rules, not here.
    """

    estimate: float
    low: float
    high: float
    violated: bool


def wilson_bounds(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score bounds for successes out of n (n may be an effective, non-integer size)."""
    if n <= 0 or math.isinf(z):
        return 0.0, 1.0
    p = min(max(successes / n, 0.0), 1.0)
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    # p = 0 or 1 must keep its own end exactly (floating-point can land a hair inside).
    low = 0.0 if p == 0.0 else max(0.0, centre - half)
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return low, high


def _check_side(side: str) -> None:
    if side not in ("max", "min"):
        raise ValueError(f"side must be 'max' or 'min', got {side!r}")


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha < 0.5:
        raise ValueError(f"alpha must be in [0, 0.5), got {alpha!r}")


def critical_z(alpha: float) -> float:
    """One-sided normal critical value z with P(Z > z) = alpha; inf for alpha 0 (a look with no budget).
    Computed as -Phi^-1(alpha) so that the tiny alphas of early O'Brien-Fleming looks keep their precision."""
    _check_alpha(alpha)
    return float("inf") if alpha <= 1e-300 else -_NORMAL.inv_cdf(alpha)


def beyond_limit(
    successes: int,
    n: int,
    limit: float,
    side: Side,
    n_eff: float | None = None,
    alpha: float = 0.05,
) -> Evidence:
    """Is the proportion ``successes / n`` beyond ``limit`` with one-sided confidence 1 - alpha?

    ``side="max"``: the rule fails above the limit (majority share, hard disagreement), violated when
    the lower Wilson bound is above it. ``side="min"``: the rule fails below the limit (agreement
    minimum), violated when the upper bound is below it. ``n_eff`` (default n) replaces n in the
    interval's width while the estimate stays successes / n.
    """
    _check_side(side)
    _check_alpha(alpha)
    if successes < 0 or n < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Evidence(float("nan"), 0.0, 1.0, False)
    size = float(n) if n_eff is None else float(min(max(n_eff, 1.0), n))
    estimate = successes / n
    low, high = wilson_bounds(estimate * size, size, critical_z(alpha))
    violated = low > limit if side == "max" else high < limit
    return Evidence(estimate, low, high, violated)


def proportion_evidence(indicator: np.ndarray, limit: float, side: Side, alpha: float = 0.05) -> Evidence:
    """:func:`beyond_limit` for a 0/1 series in event order, its n_eff taken from its own autocorrelation."""
    x = np.asarray(indicator).astype(bool, copy=False)
    return beyond_limit(int(np.count_nonzero(x)), int(x.shape[0]), limit, side, effective_sample_size(x), alpha)


def mean_beyond_limit(values: np.ndarray, limit: float, side: Side, alpha: float = 0.05) -> Evidence:
    """Is the mean of a real-valued series (e.g. the per-event plurality share behind ensemble agreement)
    beyond ``limit``? Normal bounds mean -/+ z * sd / sqrt(n_eff), n_eff from the series' autocorrelation.
    With no spread at all the bounds are the mean itself (a constant series is its own evidence)."""
    _check_side(side)
    _check_alpha(alpha)
    x = np.asarray(values, dtype=np.float64)
    n = int(x.shape[0])
    if n == 0:
        return Evidence(float("nan"), float("-inf"), float("inf"), False)
    mean, sd = float(x.mean()), float(x.std())
    z = critical_z(alpha)
    if sd == 0.0:
        half = 0.0 if n > 1 and math.isfinite(z) else float("inf")
    else:
        half = z * sd / math.sqrt(effective_sample_size(x)) if n > 1 else float("inf")
    low, high = mean - half, mean + half
    violated = low > limit if side == "max" else high < limit
    return Evidence(mean, low, high, violated)


def std_beyond_limit(values: np.ndarray, limit: float, side: Side = "min", alpha: float = 0.05) -> Evidence:
    """Population std of ``values`` against a limit (the collapsed-confidence rule is ``side="min"``).

    The variance s^2 is the mean of y_i = (x_i - mean)^2; its standard error is sd(y) / sqrt(n_eff(y)),
    n_eff from y's own autocorrelation (so a regime of wide or narrow confidences widens it). Bounds on
    the std are the square roots of s^2 -/+ z * se, the lower one floored at 0. Asymptotic, with no
    normality assumption (the chi-square interval would assume normal confidences, which they are not).
    """
    _check_side(side)
    _check_alpha(alpha)
    x = np.asarray(values, dtype=np.float64)
    n = int(x.shape[0])
    if n == 0:
        return Evidence(float("nan"), 0.0, float("inf"), False)
    y = np.square(x - x.mean())
    variance = float(y.mean())
    se = float(y.std()) / math.sqrt(effective_sample_size(y)) if n > 1 else float("inf")
    z = critical_z(alpha)
    spread = z * se if z < float("inf") or se > 0.0 else 0.0
    low = math.sqrt(max(variance - spread, 0.0))
    high = math.sqrt(variance + spread) if math.isfinite(spread) else float("inf")
    estimate = math.sqrt(variance)
    violated = low > limit if side == "max" else high < limit
    return Evidence(estimate, low, high, violated)


def quantile_bounds(values: np.ndarray, q: float, alpha: float, *,
                    ordered: np.ndarray | None = None) -> tuple[float, float, float]:
    """Linear-interpolated quantile q and distribution-free one-sided (1 - alpha) bounds for it.

    The share of the population at or below the true quantile is q; Wilson bounds [q_lo, q_hi] for that
    share, with n_eff of the indicator series 1{x <= estimate}, are mapped back through the sample
    quantile function (Woodruff's method). No density estimate and no resampling. ``ordered`` is the
    values sorted, when the caller has them: each percentile of a sorted million is ~5 ms instead of ~20
    (the indicator series stays in event order: its dependence is what n_eff measures).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.shape[0] == 0:
        raise ValueError("quantile_bounds needs at least one value")
    def percentile(percent: float) -> float:
        return float(np.percentile(x, percent)) if ordered is None else sorted_percentile(ordered, percent)

    estimate = percentile(q * 100.0)
    z = critical_z(alpha)
    if math.isinf(z):
        return estimate, float("-inf"), float("inf")
    size = effective_sample_size(x <= estimate)
    q_lo, q_hi = wilson_bounds(q * size, size, z)
    return estimate, percentile(q_lo * 100.0), percentile(q_hi * 100.0)


def sorted_percentile(ordered: np.ndarray, percent: float) -> float:
    """``np.percentile(ordered, percent)`` (method "linear") of values already sorted ascending, in O(1).

    numpy partitions its input even when it is sorted (~3 ms per call on a million values); this reads the
    two neighbours and interpolates with numpy's own formula, so the result is the same float. (Zero is returned
    as +0.0: with -0.0 among the values numpy's sign of a zero depends on its partition order; the two compare
    equal and a report never prints "-0.000".)
    """
    n = int(ordered.shape[0])
    if n == 0:
        raise ValueError("sorted_percentile needs at least one value")
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percent must be within [0, 100], got {percent!r}")
    virtual = (n - 1) * (percent / 100.0)
    if virtual >= n - 1:
        return float(ordered[n - 1]) + 0.0
    below = math.floor(virtual)
    gamma = virtual - below
    a, b = float(ordered[below]), float(ordered[below + 1])
    diff = b - a
    # numpy's _lerp: from the nearer end, so that gamma 1 gives b exactly.
    return (b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma) + 0.0


def spread_beyond_limit(
    values: np.ndarray,
    limit: float,
    side: Side = "min",
    alpha: float = 0.05,
    *,
    lower_q: float = 0.10,
    upper_q: float = 0.90,
) -> Evidence:
    """P90 - P10 (by default) of ``values`` against a limit (the narrow-range rule is ``side="min"``).

    Each quantile gets distribution-free bounds at alpha / 2 (:func:`quantile_bounds`); the spread's
    upper bound is P90_high - P10_low and its lower bound P90_low - P10_high, so each holds at 1 - alpha
    by the union bound.
    """
    _check_side(side)
    _check_alpha(alpha)
    x = np.asarray(values, dtype=np.float64)
    if x.shape[0] == 0:
        return Evidence(float("nan"), 0.0, float("inf"), False)
    ordered = np.sort(x)  # one sort serves all six percentiles (SIMD sort beats six partitions)
    top, top_lo, top_hi = quantile_bounds(x, upper_q, alpha / 2.0, ordered=ordered)
    bottom, bottom_lo, bottom_hi = quantile_bounds(x, lower_q, alpha / 2.0, ordered=ordered)
    low = max(top_lo - bottom_hi, 0.0)
    high = top_hi - bottom_lo  # inf when this look has no alpha: nothing can be established
    violated = low > limit if side == "max" else high < limit
    return Evidence(top - bottom, low, high, violated)


@dataclasses.dataclass(frozen=True)
class AlphaSchedule:
    """The false-alarm budget ``alpha`` of a watch, spent over ``looks`` planned checks.

    ``bonferroni`` (the default) gives every check alpha / looks: right for rules over a *rolling*
    window, where every check is as important as the first and the windows overlap in ways no
    joint-distribution formula tracks. ``obrien-fleming`` spends the Lan-DeMets O'Brien-Fleming
    function alpha(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)), t = k / looks, a little early and most
    late: right for *cumulative* comparisons (canary against baseline since activation), whose
    evidence grows with every check. Either way the per-check alphas sum to at most ``alpha``, so the
    family-wise false-alarm rate of the whole watch is bounded by the union bound whatever the
    dependence between checks. A check past the planned number gets nothing (alpha 0).
    """

    alpha: float = 0.05
    looks: int = 720
    method: Literal["bonferroni", "obrien-fleming"] = "bonferroni"

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.looks < 1:
            raise ValueError(f"looks must be at least 1, got {self.looks}")
        if self.method not in ("bonferroni", "obrien-fleming"):
            raise ValueError(f"unknown alpha spending method {self.method!r}")

    def spent(self, look: int) -> float:
        """Alpha spent by checks 1..look together."""
        if look <= 0:
            return 0.0
        t = min(look, self.looks) / self.looks
        if self.method == "bonferroni":
            return self.alpha * t
        return 2.0 - 2.0 * _NORMAL.cdf(normal_quantile(1.0 - self.alpha / 2.0) / math.sqrt(t))

    def for_look(self, look: int) -> float:
        """Alpha available to check ``look`` (1-based)."""
        if look < 1 or look > self.looks:
            return 0.0
        return max(self.spent(look) - self.spent(look - 1), 0.0)

    def z_for_look(self, look: int) -> float:
        """The one-sided normal critical value for check ``look`` (inf when it has no alpha)."""
        return critical_z(self.for_look(look))


__all__ = [
    "AlphaSchedule",
    "Evidence",
    "autocorrelation",
    "beyond_limit",
    "critical_z",
    "effective_sample_size",
    "mean_beyond_limit",
    "normal_quantile",
    "proportion_evidence",
    "quantile_bounds",
    "sorted_percentile",
    "spread_beyond_limit",
    "std_beyond_limit",
    "wilson_bounds",
]
