"""Outcomes: realised direction, hit rates and Brier scores, McNemar, and the non-inferiority verdict.

Oracles: a naive per-event loop for the realised direction; scipy.stats.binomtest for Wilson intervals
and the exact McNemar test (and a math.comb sum); the Newcombe paired interval published by Fagerland,
Lydersen and Laake (Statistical Analysis of Contingency Tables, 2017, ch. 8: Cavo et al. table
59/6/16/80, 95 % CI -0.1186 to -0.0046); a simulated market for the verdicts.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from qtsafe.checks.consensus import VoteMatrix, leave_one_out
from qtsafe.checks.outcomes import (
    AWAITING,
    DOWN,
    FLAT,
    NO_PRICE,
    NOT_SCORED,
    PENDING,
    STALE,
    UP,
    PriceSeries,
    Realised,
    hits,
    realised_direction,
    score_model,
    symbol_codes,
)
from qtsafe.checks.paired import (
    PairedComparison,
    mcnemar_exact,
    non_inferiority,
    paired_comparison,
    paired_difference_bounds,
)
from qtsafe.status import Status

# --- realised direction against a naive loop ------------------------------------------------------


def naive_realised(ms, sym, price, horizon, now=None, prices=None, max_delay=None, min_move=0.0):
    def good(p: float) -> bool:
        return math.isfinite(p) and p > 0

    if prices is None:
        refs = [(s, t, p, i) for i, (s, t, p) in enumerate(zip(sym, ms, price, strict=True)) if good(p)]
    else:
        refs = [(s, t, p, i) for i, (s, t, p) in enumerate(zip(*prices, strict=True)) if good(p)]
    latest = max([*ms, *[r[1] for r in refs]])
    now = latest if now is None else now
    status, move = [], []
    for i in range(len(ms)):
        due = ms[i] + horizon
        if due > now:
            status.append(PENDING)
            move.append(math.nan)
            continue
        later = sorted((r[1], r[3], r[2]) for r in refs if r[0] == sym[i] and due <= r[1] <= now)
        if not later:
            status.append(AWAITING)
            move.append(math.nan)
            continue
        end_ms, _, end = later[0]
        if max_delay is not None and end_ms - due > max_delay:
            status.append(STALE)
            move.append(math.nan)
            continue
        if prices is None:
            start = price[i] if good(price[i]) else None
        else:
            before = sorted((r[1], r[3], r[2]) for r in refs if r[0] == sym[i] and r[1] <= ms[i])
            start = before[-1][2] if before else None
        if start is None:
            status.append(NO_PRICE)
            move.append(math.nan)
            continue
        m = math.log(end / start)
        move.append(m)
        status.append(FLAT if abs(m) <= min_move else (UP if m > 0 else DOWN))
    return status, move


prices_st = st.sampled_from([100.0, 101.0, 99.0, 100.5, 0.0, -1.0, math.nan, math.inf])


@st.composite
def markets(draw: st.DrawFn):
    n = draw(st.integers(1, 30))
    ms = sorted(draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))
    if draw(st.booleans()):
        ms = draw(st.permutations(ms))  # the careful reader's events need not be sorted
    sym = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    price = draw(st.lists(prices_st, min_size=n, max_size=n))
    series = None
    if draw(st.booleans()):
        k = draw(st.integers(0, 30))
        series = (draw(st.lists(st.integers(0, 2), min_size=k, max_size=k)),
                  draw(st.lists(st.integers(0, 45), min_size=k, max_size=k)),
                  draw(st.lists(prices_st, min_size=k, max_size=k)))
    return (list(ms), sym, price, draw(st.integers(1, 12)), draw(st.one_of(st.none(), st.integers(0, 50))),
            series, draw(st.one_of(st.none(), st.integers(0, 6))), draw(st.sampled_from([0.0, 0.006])))


@settings(max_examples=400, deadline=None)
@given(markets())
def test_realised_direction_equals_a_naive_loop(case) -> None:
    ms, sym, price, horizon, now, series, max_delay, min_move = case
    prices = None if series is None else PriceSeries(np.array(series[0]), np.array(series[1]), np.array(series[2]))
    got = realised_direction(np.array(ms), np.array(sym), np.array(price), horizon, now_ms=now, prices=prices,
                             max_delay_ms=max_delay, min_move=min_move)
    status, move = naive_realised(ms, sym, price, horizon, now, series, max_delay, min_move)
    assert got.status.tolist() == status
    np.testing.assert_allclose(got.move, move, equal_nan=True)


def test_votes_near_the_end_are_pending_never_guessed() -> None:
    ms = np.arange(0, 600_000, 10_000)  # one event every 10 s for 10 minutes, one symbol
    price = 100 + np.arange(ms.shape[0], dtype=float)
    r = realised_direction(ms, np.zeros_like(ms), price, 300_000)
    assert (r.status[ms + 300_000 > ms[-1]] == PENDING).all()
    assert (r.status[ms + 300_000 <= ms[-1]] == UP).all()
    assert r.counts()["pending"] == 30 and r.counts()["up"] == 30
    # A symbol with no later entry yet: the horizon passed but the outcome is still awaited.
    r2 = realised_direction(np.array([0, 1_000_000]), np.array([0, 1]), np.array([100.0, 50.0]), 300_000)
    assert r2.status.tolist() == [AWAITING, PENDING]


def test_realised_direction_from_market_data() -> None:
    ev_ms = np.array([1_000, 2_000])
    series = PriceSeries(np.array([0, 0, 0, 1, 1]), np.array([500, 1_400, 2_600, 900, 2_500]),
                         np.array([10.0, 11.0, 9.0, 5.0, 6.0]))
    r = realised_direction(ev_ms, np.array([0, 1]), np.array([999.0, 999.0]), 1_000, prices=series)
    # Event 0: start 10.0 (the last price at or before 1,000), end 9.0 (the first at or after 2,000): down.
    # Event 1: start 5.0, end: nothing at or after 3,000 yet for symbol 1 but now is 2,600 -> pending.
    assert r.status.tolist() == [DOWN, PENDING]
    assert r.move[0] == pytest.approx(math.log(9.0 / 10.0))


def test_symbol_codes_are_shared_between_events_and_market_data() -> None:
    (events, market), names = symbol_codes(["ETHUSDT", "BTCUSDT", "ETHUSDT"], ["BTCUSDT", "SOLUSDT"])
    assert names == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert events.tolist() == [1, 0, 1] and market.tolist() == [0, 2]


def test_realised_direction_rejects_bad_input() -> None:
    one = np.array([1])
    with pytest.raises(ValueError):
        realised_direction(one, one, np.array([1.0]), 0)
    with pytest.raises(ValueError):
        realised_direction(one, np.array([-1]), np.array([1.0]), 10)
    with pytest.raises(ValueError):
        realised_direction(one, np.array([1, 2]), np.array([1.0]), 10)
    empty = realised_direction(np.array([], np.int64), np.array([], np.int64), np.array([]), 10)
    assert empty.status.shape == (0,)


# --- hits and per-model scores --------------------------------------------------------------------

def test_hits_table() -> None:
    actions = np.array([0, 0, 1, 1, 2, 0, 1, -1, 0])
    status = np.array([UP, DOWN, DOWN, UP, UP, PENDING, FLAT, UP, STALE])
    assert hits(actions, status).tolist() == [1, 0, 1, 0, NOT_SCORED, NOT_SCORED, NOT_SCORED, NOT_SCORED,
                                              NOT_SCORED]


def test_score_model_against_scipy_and_a_naive_brier() -> None:
    n = 400
    status = np.where(np.arange(n) % 2 == 0, UP, DOWN).astype(np.int8)
    status[-5:] = PENDING
    status[10] = NO_PRICE
    realised = Realised(status, np.zeros(n), 60_000)
    action = np.zeros(n, dtype=np.int8)  # always BUY: hits alternate 1, 0, 1, 0 (n_eff clipped to n)
    action[20:30] = 2  # HOLD: not scored
    conf = np.linspace(0.3, 1.2, n)
    out = score_model("xgb", np.arange(n), action, conf, realised)
    scored = (action != 2) & np.isin(status, [UP, DOWN])
    y = (status[scored] == UP).astype(float)
    assert (out.votes, out.sided_votes, out.scored, out.pending, out.unscorable) == (n, n - 10, int(scored.sum()),
                                                                                     5, 1)
    assert out.hits == int(y.sum()) and out.hit_rate == pytest.approx(y.mean())
    assert out.n_eff == out.scored  # alternating hits: no positive autocorrelation
    ci = stats.binomtest(out.hits, out.scored).proportion_ci(0.95, method="wilson")
    assert (out.hit_low, out.hit_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    naive = sum((min(c, 1.0) - h) ** 2 for c, h in zip(conf[scored], y, strict=True)) / len(y)
    assert out.brier == pytest.approx(naive)
    assert out.brier_low < out.brier < out.brier_high
    assert out.capped == int((conf[scored] > 1).sum()) > 0
    json.dumps(out.to_dict())
    nothing = score_model("nhits", np.arange(3), np.array([2, 2, 2]), np.ones(3), realised)
    assert nothing.scored == 0 and math.isnan(nothing.hit_rate) and json.dumps(nothing.to_dict())


# --- McNemar, Newcombe, non-inferiority -----------------------------------------------------------

@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 0), (0, 7), (6, 16), (40, 20), (120, 151), (500, 500)])
def test_mcnemar_exact_against_scipy_and_a_naive_sum(b: int, c: int) -> None:
    two, worse = mcnemar_exact(b, c)
    if b + c == 0:
        assert (two, worse) == (1.0, 1.0)
        return
    assert two == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    assert worse == pytest.approx(stats.binomtest(b, b + c, 0.5, alternative="less").pvalue, rel=1e-9)
    tail = sum(math.comb(b + c, k) for k in range(b + 1)) / 2 ** (b + c)
    assert worse == pytest.approx(tail, rel=1e-9)


def test_newcombe_interval_matches_the_published_example() -> None:
    cavo = PairedComparison(pairs=161, both=59, canary_only=6, baseline_only=16, neither=80, n_eff=161.0,
                            p_two_sided=1.0, p_canary_worse=1.0)
    low, high = paired_difference_bounds(cavo, stats.norm.isf(0.025))
    assert cavo.difference == pytest.approx(-0.0621, abs=5e-5)
    assert (low, high) == (pytest.approx(-0.1186, abs=5e-5), pytest.approx(-0.0046, abs=5e-5))


def test_paired_comparison_counts_only_events_both_scored() -> None:
    canary = np.array([1, 1, 0, 0, 1, -1, 0])
    baseline = np.array([1, 0, 1, 0, -1, 1, 0])
    cmp = paired_comparison(canary, baseline)
    assert (cmp.pairs, cmp.both, cmp.canary_only, cmp.baseline_only, cmp.neither) == (5, 1, 1, 1, 2)
    assert cmp.difference == 0.0 and json.dumps(cmp.to_dict())
    with pytest.raises(ValueError):
        paired_comparison(canary, baseline[:3])


def table(pairs: int, both: float, canary_only: float, baseline_only: float) -> PairedComparison:
    b, c, a = round(pairs * canary_only), round(pairs * baseline_only), round(pairs * both)
    p_two, p_worse = mcnemar_exact(b, c)
    return PairedComparison(pairs, a, b, c, pairs - a - b - c, float(pairs), p_two, p_worse)


def test_non_inferiority_verdicts() -> None:
    same = non_inferiority(table(4000, 0.45, 0.05, 0.05))
    assert same.status is Status.PASS and same.needed_more == 0 and "not worse" in same.message
    worse = non_inferiority(table(2000, 0.35, 0.05, 0.15))
    assert worse.status is Status.FAIL and worse.high < -0.02 and "worse than the baseline" in worse.message
    few = non_inferiority(table(200, 0.45, 0.05, 0.05))
    assert few.status is Status.WAIT and few.needed_more and few.needed_more > 0
    assert f"needs about {few.needed_more} more resolved outcomes" in few.message
    assert json.dumps(few.to_dict())
    too_few = non_inferiority(table(20, 0.5, 0.0, 0.0))  # a perfect tie on 20 pairs is still not evidence
    assert too_few.status is Status.WAIT and too_few.needed_more and too_few.needed_more >= 10
    at_margin = non_inferiority(table(1000, 0.40, 0.08, 0.10))  # estimate exactly -margin: no count settles it
    assert at_margin.status is Status.WAIT and at_margin.needed_more is None
    assert "sits at the margin" in at_margin.message


def test_the_needed_count_is_about_right() -> None:
    """Adding 1.5 times the stated number of pairs (same composition) settles it; a quarter does not."""
    for start_pairs, composition, settled in ((300, (0.45, 0.05, 0.05), Status.PASS),
                                              (1000, (0.30, 0.10, 0.10), Status.PASS),
                                              (300, (0.40, 0.05, 0.09), Status.FAIL)):
        start = non_inferiority(table(start_pairs, *composition))
        assert start.status is Status.WAIT and start.needed_more
        more = start.needed_more
        assert non_inferiority(table(round(start_pairs + 1.5 * more), *composition)).status is settled
        assert non_inferiority(table(start_pairs + more // 4, *composition)).status is Status.WAIT


def test_non_inferiority_with_no_pairs_uses_the_planning_formula() -> None:
    empty = non_inferiority(PairedComparison(0, 0, 0, 0, 0, 0.0, 1.0, 1.0), margin=0.02, confidence=0.95)
    z = stats.norm.isf(0.05)
    assert empty.status is Status.WAIT
    assert empty.needed_more == math.ceil(z * z * 0.3 / 0.02**2)
    with pytest.raises(ValueError):
        non_inferiority(PairedComparison(0, 0, 0, 0, 0, 0.0, 1.0, 1.0), margin=0.0)


# --- a simulated market: a healthy canary passes, a backwards one fails ------------------------------

def market(kind: str, events: int = 6000, seed: int = 3):
    """Three symbols, each with a latent side persisting for minutes (AR-like regimes) and a price that
    drifts with it; four voting models that mostly follow the side; the canary is ``kind``."""
    rng = np.random.default_rng(seed)
    sym = rng.integers(0, 3, events)
    ms = np.arange(events, dtype=np.int64) * 1000
    side = np.zeros((3, events), dtype=np.int8)
    for s in range(3):
        flips = rng.random(events) < 1 / 120
        side[s] = np.cumsum(flips) % 2
    event_side = side[sym, np.arange(events)]
    drift = np.where(event_side == 0, 4e-4, -4e-4)
    log_price = np.zeros(events)
    for s in range(3):
        mine = sym == s
        log_price[mine] = np.cumsum(drift[mine] + rng.normal(0, 1e-3, mine.sum()))
    price = 100 * np.exp(log_price)
    columns = []
    for j in range(4):
        draw = rng.random(events)
        a = np.where(draw < 0.48, event_side, np.where(draw < 0.97, 2, 1 - event_side)).astype(np.int8)
        if j == 3 and kind == "backwards":
            a = np.where(a == 2, 2, 1 - a).astype(np.int8)
        columns.append(a)
    return ms, sym, price, np.stack(columns, axis=1)


def plurality(actions: np.ndarray) -> np.ndarray:
    """The plurality action of the given voters per event (NO_VOTE on a tie), via an extra shadow column."""
    with_probe = np.concatenate([actions, np.full((actions.shape[0], 1), 2, np.int8)], axis=1)
    names = tuple(f"m{j}" for j in range(with_probe.shape[1]))
    voting = np.array([True] * actions.shape[1] + [False])
    return leave_one_out(VoteMatrix(names, with_probe, voting)).consensus[-1]


@pytest.mark.parametrize(("kind", "expected"), [("healthy", Status.PASS), ("backwards", Status.FAIL)])
def test_canary_against_what_it_replaces_on_the_same_events(kind: str, expected: Status) -> None:
    """Canary's own direction against a baseline model of the same quality (the one it replaces)."""
    ms, sym, price, actions = market(kind)
    realised = realised_direction(ms, sym, price, 60_000)
    verdict = non_inferiority(paired_comparison(hits(actions[:, 3], realised.status),
                                                hits(actions[:, 0], realised.status)))
    assert verdict.status is expected, verdict.message
    score = score_model("canary", np.arange(ms.shape[0]), actions[:, 3], np.full(ms.shape[0], 0.7), realised)
    assert (score.hit_low > 0.5) if kind == "healthy" else (score.hit_high < 0.5)


def test_canary_against_the_baseline_ensemble() -> None:
    """The others' consensus (the baseline ensemble without the canary) as the reference: a backwards
    canary is significantly worse; the ensemble with a healthy canary is not worse than without it."""
    ms, sym, price, actions = market("backwards")
    realised = realised_direction(ms, sym, price, 60_000)
    series = leave_one_out(VoteMatrix(("a", "b", "c", "canary"), actions, np.ones(4, bool)))
    worse = non_inferiority(paired_comparison(hits(actions[:, 3], realised.status),
                                              hits(series.consensus[3], realised.status)))
    assert worse.status is Status.FAIL and worse.needed_more == 0
    ms, sym, price, actions = market("healthy", seed=4)
    realised = realised_direction(ms, sym, price, 60_000)
    with_canary = hits(plurality(actions), realised.status)
    without = hits(plurality(actions[:, :3]), realised.status)
    assert non_inferiority(paired_comparison(with_canary, without)).status is Status.PASS
