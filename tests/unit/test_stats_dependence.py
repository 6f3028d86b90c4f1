"""Evidence under dependence: effective sample size, Wilson bounds, spread bounds, alpha spending.

References are independent of the code under test: scipy.stats (Wilson intervals of binomtest, normal
quantiles), the closed-form n_eff of an AR(1) process and of a two-state Markov chain, and coverage
measured by simulation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qtsafe.checks.dependence import (
    AlphaSchedule,
    autocorrelation,
    beyond_limit,
    critical_z,
    effective_sample_size,
    mean_beyond_limit,
    proportion_evidence,
    quantile_bounds,
    sorted_percentile,
    spread_beyond_limit,
    std_beyond_limit,
    wilson_bounds,
)


def ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    noise = rng.normal(size=n)
    out = np.empty(n)
    out[0] = noise[0] / math.sqrt(1 - rho * rho)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + noise[i]
    return out


def markov_binary(rng: np.random.Generator, n: int, p: float, persistence: float) -> np.ndarray:
    """0/1 regimes: stay with probability ``persistence``, else redraw from Bernoulli(p).
    Stationary mean p, lag-k autocorrelation persistence^k, so tau = (1 + lam) / (1 - lam)."""
    redraw = rng.random(n) < p
    stay = rng.random(n) < persistence
    out = np.empty(n, dtype=bool)
    out[0] = redraw[0]
    for i in range(1, n):
        out[i] = out[i - 1] if stay[i] else redraw[i]
    return out


# --- Wilson bounds and beyond_limit -----------------------------------------------------------------

@pytest.mark.parametrize(("k", "n", "alpha"), [(0, 10, 0.05), (3, 10, 0.05), (10, 10, 0.025), (141, 200, 0.05),
                                               (24, 200, 0.01), (1, 1, 0.05), (500, 1000, 6.9e-5)])
def test_beyond_limit_bounds_are_scipy_wilson_bounds(k: int, n: int, alpha: float) -> None:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="wilson")
    ev = beyond_limit(k, n, 0.5, "max", alpha=alpha)
    assert ev.estimate == pytest.approx(k / n)
    assert ev.low == pytest.approx(ci.low, abs=1e-12)
    assert ev.high == pytest.approx(ci.high, abs=1e-12)


def test_critical_z_matches_scipy_even_for_tiny_alphas() -> None:
    for alpha in (0.05, 0.025, 0.05 / 720, 1e-12, 1e-100):
        assert critical_z(alpha) == pytest.approx(stats.norm.isf(alpha), rel=1e-9)
    assert critical_z(0.0) == math.inf


def test_a_point_estimate_past_the_limit_is_not_yet_a_violation() -> None:
    # 150 of 200 (75 %) against the 70 % majority limit: the lower bound is below 70 %.
    assert beyond_limit(150, 200, 0.70, "max").violated is False
    assert beyond_limit(170, 200, 0.70, "max").violated is True
    # The same 85 % over 200 correlated events worth 20 independent ones is not established.
    assert beyond_limit(170, 200, 0.70, "max", n_eff=20).violated is False
    # A min rule (agreement >= 55 %) fails only when the upper bound is below the limit.
    assert beyond_limit(100, 200, 0.55, "min").violated is False
    assert beyond_limit(80, 200, 0.55, "min").violated is True


def test_beyond_limit_edges() -> None:
    empty = beyond_limit(0, 0, 0.2, "max")
    assert math.isnan(empty.estimate) and not empty.violated and (empty.low, empty.high) == (0.0, 1.0)
    # A shared, total failure (every vote HOLD) stays a violation.
    assert beyond_limit(200, 200, 0.70, "max").violated is True
    # An alpha of 0 (a look with no budget) establishes nothing.
    assert beyond_limit(200, 200, 0.70, "max", alpha=0.0).violated is False
    # n_eff is clipped to [1, n]: it never claims more evidence than n events.
    assert beyond_limit(150, 200, 0.7, "max", n_eff=10_000) == beyond_limit(150, 200, 0.7, "max")
    for bad in ((5, 4, 0.5, "max"), (-1, 4, 0.5, "max"), (1, 4, 0.5, "above")):
        with pytest.raises(ValueError):
            beyond_limit(*bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        beyond_limit(1, 4, 0.5, "max", alpha=0.6)


def test_wilson_bounds_keep_the_ends_of_zero_and_full_counts() -> None:
    assert wilson_bounds(0, 50, 1.96)[0] == 0.0
    assert wilson_bounds(50, 50, 1.96)[1] == 1.0
    assert wilson_bounds(3, 0, 1.96) == (0.0, 1.0)


# --- effective sample size ------------------------------------------------------------------------

def test_autocorrelation_matches_the_direct_sum() -> None:
    x = np.random.default_rng(3).normal(size=64)
    c = x - x.mean()
    direct = np.array([np.dot(c[: 64 - k], c[k:]) for k in range(64)]) / np.dot(c, c)
    np.testing.assert_allclose(autocorrelation(x), direct, atol=1e-12)


@pytest.mark.parametrize(("n", "rho"), [(4_000, 0.6), (16_000, 0.9), (200_000, 0.8)])
def test_effective_sample_size_of_ar1_matches_theory(n: int, rho: float) -> None:
    # n (1 - rho) / (1 + rho); 200,000 takes the batch-means path, the others the direct one.
    x = ar1(np.random.default_rng(11), n, rho)
    assert effective_sample_size(x) == pytest.approx(n * (1 - rho) / (1 + rho), rel=0.25)


def test_effective_sample_size_of_independent_and_regime_binary_series() -> None:
    rng = np.random.default_rng(5)
    independent = rng.random(5_000) < 0.3
    assert effective_sample_size(independent) == pytest.approx(5_000, rel=0.2)
    lam = 0.9
    regimes = markov_binary(rng, 5_000, 0.3, lam)
    assert effective_sample_size(regimes) == pytest.approx(5_000 * (1 - lam) / (1 + lam), rel=0.3)


def test_effective_sample_size_edges() -> None:
    assert effective_sample_size(np.ones(300)) == 300.0  # a constant series is not excused as a regime
    assert effective_sample_size(np.array([1.0, 0.0, 1.0])) == 3.0
    alternating = np.tile([0.0, 1.0], 100)  # negative correlation: never more than n
    assert effective_sample_size(alternating) == 200.0
    with pytest.raises(ValueError):
        effective_sample_size(np.array([1.0, np.nan, 0.0, 1.0, 2.0]))


def test_interval_with_n_eff_covers_under_regimes_where_the_naive_one_does_not() -> None:
    # 300 watches of 400 events with regimes (lag-1 correlation 0.9): the share of intervals that miss
    # the true rate. The naive interval (n independent events) misses far more than its 5 %.
    rng = np.random.default_rng(2026)
    p, naive_miss, eff_miss = 0.3, 0, 0
    runs = 300
    for _ in range(runs):
        x = markov_binary(rng, 400, p, 0.9)
        eff = proportion_evidence(x, p, "max", alpha=0.025)
        naive = beyond_limit(int(x.sum()), 400, p, "max", alpha=0.025)
        eff_miss += not eff.low <= p <= eff.high
        naive_miss += not naive.low <= p <= naive.high
    assert naive_miss / runs > 0.30
    assert eff_miss / runs < 0.12


# --- spread rules ---------------------------------------------------------------------------------

def test_std_evidence() -> None:
    rng = np.random.default_rng(8)
    healthy = rng.uniform(0.55, 0.97, 400)
    ev = std_beyond_limit(healthy, 0.05, "min")
    assert ev.estimate == pytest.approx(float(np.std(healthy)))
    assert ev.low < ev.estimate < ev.high and not ev.violated
    collapsed = 0.6150 + rng.normal(0, 0.002, 400)
    assert std_beyond_limit(collapsed, 0.05, "min").violated
    assert std_beyond_limit(np.full(200, 0.615), 0.05, "min").violated
    # Few events near the limit: the bound, not the point estimate, decides.
    near = rng.normal(0.7, 0.045, 12)
    assert np.std(near) < 0.05 and not std_beyond_limit(near, 0.05, "min").violated


def test_std_bounds_cover_the_true_std() -> None:
    rng = np.random.default_rng(9)
    misses = sum(not (lambda ev: ev.low <= 0.1 <= ev.high)(std_beyond_limit(rng.normal(0, 0.1, 300), 0.05,
                                                                              alpha=0.025))
                 for _ in range(300))
    assert misses / 300 < 0.10


def test_quantile_bounds_cover_the_true_quantile() -> None:
    rng = np.random.default_rng(10)
    misses = 0
    for _ in range(300):
        x = rng.uniform(0, 1, 300)
        estimate, low, high = quantile_bounds(x, 0.9, 0.025)
        assert estimate == pytest.approx(float(np.percentile(x, 90)))
        misses += not low <= 0.9 <= high
    assert misses / 300 < 0.10


def test_spread_evidence() -> None:
    rng = np.random.default_rng(12)
    healthy = rng.uniform(0.55, 0.97, 400)
    ev = spread_beyond_limit(healthy, 0.12, "min")
    assert ev.estimate == pytest.approx(float(np.percentile(healthy, 90) - np.percentile(healthy, 10)))
    assert not ev.violated and ev.low <= ev.estimate <= ev.high
    draw = rng.random(1000)  # the simulator's "narrow" lgbm: mostly 0.70-0.78
    narrow = np.where(draw < 0.06, 0.2, np.where(draw < 0.12, 0.99, rng.uniform(0.70, 0.78, 1000)))
    assert spread_beyond_limit(narrow, 0.12, "min").violated
    assert spread_beyond_limit(np.full(50, 0.6), 0.12, "min").violated
    assert not spread_beyond_limit(narrow, 0.12, "min", alpha=0.0).violated


# --- alpha spending -------------------------------------------------------------------------------

def test_bonferroni_schedule() -> None:
    s = AlphaSchedule(alpha=0.05, looks=720)
    assert s.for_look(1) == pytest.approx(0.05 / 720)
    assert s.z_for_look(360) == pytest.approx(stats.norm.isf(0.05 / 720))
    assert sum(s.for_look(k) for k in range(1, 721)) == pytest.approx(0.05)
    assert s.for_look(721) == 0.0 and s.for_look(0) == 0.0 and s.z_for_look(721) == math.inf


def test_obrien_fleming_schedule_spends_the_lan_demets_function() -> None:
    s = AlphaSchedule(alpha=0.05, looks=12, method="obrien-fleming")
    z = stats.norm.isf(0.025)
    for k in range(1, 13):
        assert s.spent(k) == pytest.approx(2 * stats.norm.sf(z / math.sqrt(k / 12)), abs=1e-12)
    steps = [s.for_look(k) for k in range(1, 13)]
    assert all(a >= 0 for a in steps) and steps == sorted(steps)  # little early, most late
    assert sum(steps) == pytest.approx(0.05)


def test_alpha_schedule_rejects_nonsense() -> None:
    for kwargs in ({"alpha": 0.7}, {"looks": 0}, {"method": "pocock"}):
        with pytest.raises(ValueError):
            AlphaSchedule(**kwargs)  # type: ignore[arg-type]


def test_a_healthy_watch_near_its_limit_rarely_false_alarms_with_evidence_and_spending() -> None:
    """The issue's complaint in miniature: a healthy ensemble with 15 % hard disagreement in regimes,
    a 200-event window judged every 15 events for 720 checks, limit 20 %. A point estimate crosses
    the limit in most watches; evidence with n_eff and Bonferroni spending almost never does."""
    rng = np.random.default_rng(42)
    schedule = AlphaSchedule(alpha=0.05, looks=720)
    runs, window, step = 12, 200, 15
    point_alarms = evidence_alarms = 0
    for _ in range(runs):
        hard = markov_binary(rng, window + 719 * step, 0.15, 0.8)
        point = evidence = False
        for look in range(1, 721):
            end = window + (look - 1) * step
            part = hard[end - window:end]
            point |= part.mean() > 0.20
            if not evidence:
                evidence = proportion_evidence(part, 0.20, "max", alpha=schedule.for_look(look)).violated
        point_alarms += point
        evidence_alarms += evidence
    assert point_alarms >= runs // 2
    assert evidence_alarms <= 1


# --- means (ensemble agreement) -------------------------------------------------------------------

def test_mean_evidence_matches_the_normal_formula_and_covers() -> None:
    rng = np.random.default_rng(13)
    shares = rng.choice([0.5, 2 / 3, 0.75, 1.0], size=300, p=[0.2, 0.3, 0.3, 0.2])
    ev = mean_beyond_limit(shares, 0.55, "min", alpha=0.025)
    n_eff = effective_sample_size(shares)
    half = stats.norm.isf(0.025) * shares.std() / math.sqrt(n_eff)
    assert (ev.estimate, ev.low, ev.high) == (pytest.approx(shares.mean()), pytest.approx(shares.mean() - half),
                                              pytest.approx(shares.mean() + half))
    assert not ev.violated
    assert mean_beyond_limit(np.full(200, 0.45), 0.55, "min").violated  # a constant series is its own evidence
    assert not mean_beyond_limit(np.array([0.4]), 0.55, "min").violated  # one value: nothing established
    assert math.isnan(mean_beyond_limit(np.array([]), 0.55, "min").estimate)
    # Coverage under regimes: AR(1) around 0.7.
    misses = 0
    for _ in range(200):
        x = 0.7 + 0.1 * ar1(rng, 400, 0.8) * math.sqrt(1 - 0.64)
        e = mean_beyond_limit(x, 0.0, "max", alpha=0.025)
        misses += not e.low <= 0.7 <= e.high
    assert misses / 200 < 0.12


@pytest.mark.parametrize("seed", range(6))
def test_sorted_percentile_is_numpys_float(seed: int) -> None:
    """The O(1) look-up of a sorted array gives exactly np.percentile's linear answer: same float, every
    percent (ends, halves, the Wilson ends quantile_bounds asks for), with ties and tiny arrays."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5)) if seed < 2 else int(rng.integers(5, 3000))
    values = np.round(rng.beta(2, 2, size=n), 2 if seed % 2 else 12)  # rounding makes ties
    ordered = np.sort(values)
    percents = [0.0, 100.0, 50.0, 10.0, 90.0, *(rng.uniform(0, 100, size=200) * 1.0)]
    for q in (0.1, 0.9, 0.0137):
        percents += [q * 100.0, wilson_bounds(q * n, n, 2.24)[0] * 100.0, wilson_bounds(q * n, n, 2.24)[1] * 100.0]
    for percent in percents:
        assert sorted_percentile(ordered, float(percent)) == float(np.percentile(values, float(percent)))


def test_sorted_percentile_gives_zero_one_sign() -> None:
    ordered = np.sort(np.array([0.0, -0.0, -0.0]))
    for percent in (0.0, 50.0, 100.0):
        value = sorted_percentile(ordered, percent)
        assert value == np.percentile(ordered, percent) and math.copysign(1.0, value) == 1.0


def test_sorted_percentile_refuses_what_numpy_refuses() -> None:
    with pytest.raises(ValueError):
        sorted_percentile(np.empty(0), 50.0)
    with pytest.raises(ValueError):
        sorted_percentile(np.arange(3.0), 100.5)
