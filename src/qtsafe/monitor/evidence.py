"""The monitor's statistical rules: a violation is a bound beyond the limit, not a point estimate across it.

Proportion rules (majority share, HOLD dead zone, ensemble hard disagreement and agreement bounds) and
spread rules (confidence std, P90-P10) over the rolling window are judged with the bounds of
:mod:`qtsafe.checks.dependence`. Two things set an interval's width:

- **dependence**: n_eff of the judged window is n / tau, tau the integrated autocorrelation time of the
  same series over the longer recent history (``monitor.history_events``, 1,000 by default): a market
  regime lasts longer than a 200-event window, and inside the window it looks like a shifted mean, not
  like correlation. The window's own n_eff is used when it is smaller.
- **repeated looks**: the per-check alpha of the watch's :class:`~qtsafe.checks.dependence.AlphaSchedule`.

The whole-since-activation figures come from counters; their n_eff is n / tau with the same tau.
Hard evidence is judged by value, at once: a constant output, a degenerate model (and, in state.py,
invalid values, a missing model, lost telemetry). The relative rule (:mod:`qtsafe.checks.consensus`)
judges the canary against the other models in the same events. See docs/verdicts.md ("The monitor").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from qtsafe.checks.consensus import (
    ConsensusFigures,
    RelativeRule,
    fleiss_kappa,
    judge_relative,
    relative_evidence,
)
from qtsafe.checks.dependence import Evidence, beyond_limit, critical_z, effective_sample_size, wilson_bounds
from qtsafe.checks.ensemble import EnsembleFigures
from qtsafe.checks.quality import ACTIONS, FAIL, Finding, ModelStats
from qtsafe.checks.special import student_t_quantile
from qtsafe.config import Thresholds
from qtsafe.monitor.rolling import RollingConsensus
from qtsafe.timeutil import format_duration


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def tau(history: np.ndarray) -> float:
    """Integrated autocorrelation time of a series (n / n_eff, at least 1)."""
    x = np.asarray(history, dtype=np.float64)
    n = int(x.shape[0])
    return max(n / effective_sample_size(x), 1.0) if n >= 4 else 1.0


def n_eff(window: np.ndarray, history: np.ndarray) -> float:
    """Effective size of the window: its own estimate, or n / tau of the longer history if that is smaller."""
    n = int(window.shape[0])
    if n == 0:
        return 0.0
    own = effective_sample_size(np.asarray(window, dtype=np.float64))
    return max(min(own, n / tau(history)), 1.0)


def share_evidence(window: np.ndarray, history: np.ndarray, limit: float, side: str, alpha: float) -> Evidence:
    """:func:`~qtsafe.checks.dependence.beyond_limit` for a 0/1 window, n_eff as in :func:`n_eff`."""
    w = np.asarray(window).astype(bool, copy=False)
    return beyond_limit(int(np.count_nonzero(w)), int(w.shape[0]), limit, side,  # type: ignore[arg-type]
                        n_eff(w, np.asarray(history).astype(bool, copy=False)), alpha)


def mean_evidence(window: np.ndarray, history: np.ndarray, limit: float, side: str, alpha: float) -> Evidence:
    """The mean of a real series against a limit: mean -/+ z sd / sqrt(n_eff). A constant window is its own
    evidence (a shared failure such as every vote HOLD is not excused as a regime)."""
    x = np.asarray(window, dtype=np.float64)
    if x.shape[0] == 0:
        return Evidence(float("nan"), float("-inf"), float("inf"), False)
    mean, sd = float(x.mean()), float(x.std())
    z = critical_z(alpha)
    half = 0.0 if sd == 0.0 and x.shape[0] > 1 else z * sd / math.sqrt(n_eff(x, history))
    low, high = mean - half, mean + half
    return Evidence(mean, low, high, low > limit if side == "max" else high < limit)


def std_evidence(window: np.ndarray, history: np.ndarray, limit: float, alpha: float,
                 variance: float | None = None, n: int | None = None) -> Evidence:
    """Upper bound of the confidence std (the collapsed rule fails below the limit). The variance is the mean
    of y = (x - mean)^2 with standard error sd(y) / sqrt(n_eff(y)); ``variance`` and ``n`` judge a cumulative
    figure with the window's sd(y) and the history's tau."""
    x = np.asarray(window, dtype=np.float64)
    if x.shape[0] < 2:
        return Evidence(float("nan"), 0.0, float("inf"), False)
    y = np.square(x - x.mean())
    h = np.asarray(history, dtype=np.float64)
    y_history = np.square(h - h.mean())
    if variance is None or n is None:
        variance, size = float(y.mean()), n_eff(y, y_history)
    else:
        size = max(n / tau(y_history), 1.0)
    z = critical_z(alpha)
    se = float(y.std()) / math.sqrt(size)
    spread = z * se if se > 0.0 else 0.0
    high = math.sqrt(variance + spread) if math.isfinite(spread) else float("inf")
    low = math.sqrt(max(variance - spread, 0.0)) if math.isfinite(spread) else 0.0
    return Evidence(math.sqrt(variance), low, high, high < limit)


def spread_evidence(window: np.ndarray, history: np.ndarray, limit: float, alpha: float) -> Evidence:
    """Upper bound of P90 - P10 (the narrow rule fails below the limit): Woodruff's distribution-free bounds
    of each quantile at alpha / 2, n_eff of the indicator 1{x <= quantile} over the window and the history."""
    x = np.asarray(window, dtype=np.float64)
    if x.shape[0] == 0:
        return Evidence(float("nan"), 0.0, float("inf"), False)
    z = critical_z(alpha / 2.0)
    h = np.asarray(history, dtype=np.float64)
    bounds = []
    for q in (0.10, 0.90):
        estimate = float(np.percentile(x, q * 100.0))
        if math.isinf(z):
            bounds.append((estimate, float("-inf"), float("inf")))
            continue
        size = n_eff(x <= estimate, h <= estimate)
        q_lo, q_hi = wilson_bounds(q * size, size, z)
        bounds.append((estimate, float(np.percentile(x, q_lo * 100.0)), float(np.percentile(x, q_hi * 100.0))))
    (p10, p10_lo, p10_hi), (p90, p90_lo, p90_hi) = bounds
    high = p90_hi - p10_lo
    return Evidence(p90 - p10, max(p90_lo - p10_hi, 0.0), high, high < limit)


MARKET_MARGIN = 0.10  # how far above the others' share of the same action a model's share must be established


def _market_explains(ev: Evidence, hits: int, n: int, market: np.ndarray | None, action: int) -> bool:
    """A share the others show too in the same events is the market, not the model (a regime every model
    sees): excused unless its lower bound is also ``MARKET_MARGIN`` above the others' share of that action.
    Never for a window where every vote is that action: a series with no variance is not a regime (a
    shared failure, e.g. every model HOLD, still fails)."""
    if market is None or hits == n:
        return False
    return bool(ev.low <= float(market[action]) + MARKET_MARGIN)


def judge_window_model(actions: np.ndarray, conf: np.ndarray, window: int, t: Thresholds, *, subject: str,
                       scope: str, alpha: float, market: np.ndarray | None = None) -> list[Finding]:
    """The output-quality rules over the newest ``window`` of one model's kept votes, each established at
    one-sided 1 - alpha; the older kept votes only measure dependence. ``market`` is the others' BUY/SELL/HOLD
    shares in the same events (their leave-one-out consensus), used by the majority rule."""
    out: list[Finding] = []
    acts, conf_w = actions[-window:], conf[-window:]
    n = int(acts.shape[0])
    if n == 0:
        return out

    def fail(check: str, message: str) -> None:
        out.append(Finding(check, FAIL, message, subject, scope))

    counts = np.bincount(acts.astype(np.int64), minlength=3)
    top = int(np.argmax(counts))
    # A bound beyond the limit needs the estimate beyond it: the costly evidence is computed only then.
    majority = (share_evidence(acts == top, actions == top, t.majority_max, "max", alpha)
                if counts[top] / n > t.majority_max else None)
    if majority is not None and majority.violated and not _market_explains(majority, int(counts[top]), n,
                                                                           market, top):
        fail("majority_bias", f"{subject}: {ACTIONS[top]} is {_pct(majority.estimate)} of actions in the {scope} "
                              f"(limit {_pct(t.majority_max)}; lower bound {_pct(majority.low)})")
    p10, p50, p90 = (float(x) for x in np.percentile(conf_w, [10, 50, 90]))
    estimate_spread = p90 - p10
    std = float(conf_w.std())
    # Hard evidence: a constant or degenerate output is a fact about the votes, judged by its value.
    if std < t.constant_std or p10 == p90:
        fail("constant_output", f"{subject}: constant output in the {scope} (confidence ~{p50:.4f}, "
                                f"std {std:.4f}, P10 {p10:.4f} = P90 {p90:.4f})" if p10 == p90 else
             f"{subject}: near-constant output in the {scope} (std {std:.4f} < {t.constant_std})")
    if counts[top] / n > t.degenerate_action_max and std < t.degenerate_std:
        fail("degenerate", f"{subject}: degenerate: {ACTIONS[top]} is {_pct(counts[top] / n)} of actions with "
                           f"confidence std {std:.4f} in the {scope}")
    collapsed = std_evidence(conf_w, conf, t.std_min, alpha) if std < t.std_min else None
    if collapsed is not None and collapsed.violated:
        fail("collapsed_confidence", f"{subject}: confidence std {collapsed.estimate:.4f} in the {scope} is below "
                                     f"{t.std_min} (collapsed output; upper bound {collapsed.high:.4f})")
    narrow = spread_evidence(conf_w, conf, t.p10_p90_min, alpha) if estimate_spread < t.p10_p90_min else None
    if narrow is not None and narrow.violated:
        fail("narrow_range", f"{subject}: confidence P10-P90 spread {narrow.estimate:.4f} in the {scope} is below "
                             f"{t.p10_p90_min} (upper bound {narrow.high:.4f})")
    hold_code = ACTIONS.index("HOLD")
    hold = (share_evidence(acts == hold_code, actions == hold_code, t.hold_dead_zone_max, "max", alpha)
            if counts[hold_code] / n > t.hold_dead_zone_max else None)
    if hold is not None and hold.violated:
        zone = share_evidence((conf_w >= t.dead_zone_low) & (conf_w <= t.dead_zone_high),
                              (conf >= t.dead_zone_low) & (conf <= t.dead_zone_high), t.dead_zone_fraction,
                              "max", alpha)
        if zone.violated:
            fail("hold_dead_zone", f"{subject}: HOLD is {_pct(hold.estimate)} in the {scope} (lower bound "
                                   f"{_pct(hold.low)}, limit {_pct(t.hold_dead_zone_max)}) with "
                                   f"{_pct(zone.estimate)} of confidences in [{t.dead_zone_low}, "
                                   f"{t.dead_zone_high}] (HOLD dead zone)")
    return out


def judge_cumulative_model(stats: ModelStats, actions: np.ndarray, conf: np.ndarray, window: int, t: Thresholds,
                           *, subject: str, scope: str, alpha: float,
                           market: np.ndarray | None = None) -> list[Finding]:
    """The majority and std rules over the whole time since activation (counters), n_eff = n / tau of the
    kept history. Constant, degenerate, narrow and dead-zone outputs are judged on the window, where
    the votes are: a cumulative figure mixes the healthy past into them."""
    out: list[Finding] = []
    n = stats.n
    if n == 0 or actions.shape[0] == 0:
        return out
    top = stats.top_action
    if stats.action_counts[top] / n > t.majority_max:
        majority = beyond_limit(stats.action_counts[top], n, t.majority_max, "max",
                                n / tau(actions == ACTIONS.index(top)), alpha)
    else:
        majority = Evidence(stats.action_counts[top] / n, 0.0, 1.0, False)
    if majority.violated and not _market_explains(majority, stats.action_counts[top], n, market,
                                                  ACTIONS.index(top)):
        out.append(Finding("majority_bias", FAIL,
                           f"{subject}: {top} is {_pct(majority.estimate)} of actions in the {scope} "
                           f"(limit {_pct(t.majority_max)}; lower bound {_pct(majority.low)})", subject, scope))
    if math.isfinite(stats.conf_std) and stats.conf_std < t.std_min:
        collapsed = std_evidence(conf[-window:], conf, t.std_min, alpha, variance=stats.conf_std ** 2, n=n)
        if collapsed.violated:
            out.append(Finding("collapsed_confidence", FAIL,
                               f"{subject}: confidence std {stats.conf_std:.4f} in the {scope} is below "
                               f"{t.std_min} (collapsed output; upper bound {collapsed.high:.4f})", subject, scope))
    return out


COPY_KAPPA = 0.80  # chance-corrected agreement above which agreeing models are copies, not a market move
MIN_BATCHES = 4  # completed batches before the sustained agreement rule can judge
JUDGED_BATCHES = 4  # the newest completed batches it judges (1 h of 15-minute batches)


def judge_ensemble_window(shares: np.ndarray, hard: np.ndarray, window: int, figures: EnsembleFigures,
                          t: Thresholds, *, alpha: float, votes: np.ndarray | None = None) -> list[Finding]:
    """Agreement bounds and hard disagreement over the newest ``window`` judged events, with evidence.

    Agreement established above the upper limit is the market's, not a violation, when the chance-corrected
    agreement (Fleiss' kappa of the window's ``votes``) is at most :data:`COPY_KAPPA`: a direction regime
    skews every model's action shares the same way, so they agree without having become copies of one
    another. A persistent over-agreement is judged over the whole watch (:func:`judge_ensemble_batches`).
    Without the window's votes (a watch resumed from an older state) nothing is excused."""
    out: list[Finding] = []
    if figures.events == 0:
        return out
    scope = f"rolling window of {figures.events} events"
    for limit, side in ((t.agreement_min, "min"), (t.agreement_max, "max")):
        if (figures.agreement >= limit) if side == "min" else (figures.agreement <= limit):
            continue  # the estimate is inside the limit: no bound can be beyond it
        ev = mean_evidence(shares[-window:], shares, limit, side, alpha)
        if not ev.violated:
            continue
        bound = f"upper bound {_pct(ev.high)}" if side == "min" else f"lower bound {_pct(ev.low)}"
        copies = ""
        if side == "max":
            window_votes = votes[-window:] if votes is not None else None
            kappa = (fleiss_kappa(window_votes).kappa if window_votes is not None and window_votes.shape[0] >= window
                     else float("nan"))
            if math.isfinite(kappa) and kappa <= COPY_KAPPA:
                continue  # every model's shares moved together: a regime, not copies
            copies = (f", Fleiss' kappa {kappa:.2f} > {COPY_KAPPA:.2f}: the models agree beyond their own action "
                      "shares" if math.isfinite(kappa) else "")
        out.append(Finding("ensemble_agreement", FAIL,
                           f"ensemble: agreement {ev.estimate * 100:.1f} % is outside "
                           f"{t.agreement_min * 100:.0f}-{t.agreement_max * 100:.0f} % over {figures.events} "
                           f"events ({bound}{copies})", "ensemble", scope))
    disagree = (share_evidence(hard[-window:], hard, t.hard_disagree_max, "max", alpha)
                if figures.hard_disagree > t.hard_disagree_max else None)
    if disagree is not None and disagree.violated:
        out.append(Finding("hard_disagree", FAIL,
                           f"ensemble: BUY and SELL in the same event in {_pct(disagree.estimate)} of "
                           f"{figures.events} events (limit {t.hard_disagree_max * 100:.0f} %; lower bound "
                           f"{_pct(disagree.low)})", "ensemble", scope))
    return out


def batch_evidence(means: np.ndarray, limit: float, side: str, alpha: float) -> Evidence:
    """Batch means: the mean of the newest k <= :data:`JUDGED_BATCHES` batch means against a limit with
    Student's t on k - 1 degrees of freedom, one-sided at 1 - alpha. Batches longer than a regime are nearly
    independent, so their spread measures the uncertainty of the mean directly (no autocorrelation model
    needed). Fewer than :data:`MIN_BATCHES` batches, or no alpha, judge nothing."""
    means = means[-JUDGED_BATCHES:]
    k = int(means.shape[0])
    if k < MIN_BATCHES or alpha <= 0.0:
        return Evidence(float(means.mean()) if k else float("nan"), float("-inf"), float("inf"), False)
    mean, sd = float(means.mean()), float(means.std(ddof=1))
    half = student_t_quantile(1.0 - alpha, k - 1) * sd / math.sqrt(k) if sd > 0.0 else 0.0
    low, high = mean - half, mean + half
    return Evidence(mean, low, high, low > limit if side == "max" else high < limit)


def judge_ensemble_batches(means: np.ndarray, batch_seconds: float, t: Thresholds, *,
                           alpha: float) -> list[Finding]:
    """The agreement limits sustained over the newest :data:`JUDGED_BATCHES` completed batches of stream time
    (an hour by default): a shared over-agreement (every model pushed the same way, hour after hour) that no
    200-event window can tell from a regime is established here, as is a sustained under-agreement."""
    out: list[Finding] = []
    judged = min(int(means.shape[0]), JUDGED_BATCHES)
    recent = float(means[-judged:].mean()) if judged else float("nan")
    for limit, side in ((t.agreement_min, "min"), (t.agreement_max, "max")):
        if not (recent < limit if side == "min" else recent > limit):
            continue  # the estimate is inside the limit: no bound can be beyond it
        ev = batch_evidence(means, limit, side, alpha)
        if ev.violated:
            bound = f"upper bound {_pct(ev.high)}" if side == "min" else f"lower bound {_pct(ev.low)}"
            out.append(Finding("ensemble_agreement", FAIL,
                               f"ensemble: agreement {ev.estimate * 100:.1f} % over the last {judged} batches of "
                               f"{format_duration(batch_seconds)} is outside "
                               f"{t.agreement_min * 100:.0f}-{t.agreement_max * 100:.0f} % ({bound}; batch means)",
                               "ensemble", f"last {judged} batches"))
    return out


def judge_canary_relative(consensus: RollingConsensus, canary: str, *, alpha: float) -> list[Finding]:
    """The relative rule for the canary: its hard disagreement with the others' consensus far above theirs
    (no baseline before the cutover here, so the stricter margin)."""
    rule = RelativeRule(alpha=alpha)
    rates = {name: rate for name, rate in consensus.hard_rates().items() if not math.isnan(rate)}
    others = [rate for name, rate in rates.items() if name != canary]
    # The limit is at least the lowest other rate plus the margin and the bound at most the estimate, so
    # below that nothing can be established and the effective sizes are not computed.
    if canary not in rates or not others or rates[canary] <= min(others) + rule.margin_no_baseline:
        return []
    figures: Mapping[str, ConsensusFigures] = consensus.figures()
    mine = [ev for ev in relative_evidence(figures, None, rule) if ev.name == canary]
    events = consensus.events
    return judge_relative(mine, scope=f"last {events} events")


__all__ = ["COPY_KAPPA", "MIN_BATCHES", "batch_evidence", "judge_canary_relative", "judge_cumulative_model",
           "judge_ensemble_batches", "judge_ensemble_window", "judge_window_model",
           "mean_evidence", "n_eff", "share_evidence", "spread_evidence", "std_evidence", "tau"]
