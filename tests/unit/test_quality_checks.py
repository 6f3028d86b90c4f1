"""The per-model rules: a table of outputs and the finding each must produce, plus invariants."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtsafe.checks.quality import VoteDefects, judge_defects, judge_stats, model_stats
from qtsafe.config import Thresholds

T = Thresholds()
RNG = np.random.default_rng(1)


def healthy(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    actions = RNG.choice(3, size=n, p=[0.4, 0.35, 0.25]).astype(np.int8)
    return actions, RNG.uniform(0.5, 0.95, n)


def checks(actions: np.ndarray, conf: np.ndarray, min_events: int | None = 200) -> set[str]:
    stats = model_stats(actions, conf, T)
    return {f.check for f in judge_stats(stats, T, subject="m", scope="whole window", min_events=min_events)}


def test_healthy_output_has_no_findings() -> None:
    assert checks(*healthy()) == set()


CASES = [
    ("majority bias", lambda: (np.array([0] * 300 + [1] * 50 + [2] * 50, np.int8), RNG.uniform(0.5, 0.95, 400)),
     {"majority_bias"}),
    ("collapsed std", lambda: (healthy()[0], RNG.uniform(0.60, 0.74, 400)), {"collapsed_confidence"}),
    ("constant 0.5239", lambda: (np.full(400, 2, np.int8), np.full(400, 0.5239)),
     {"majority_bias", "collapsed_confidence", "narrow_range", "constant_output", "hold_dead_zone", "degenerate"}),
    ("hold dead zone", lambda: (np.array([2] * 360 + [0] * 40, np.int8),
                                np.concatenate([RNG.uniform(0.40, 0.60, 360), RNG.uniform(0.0, 1.0, 40)])),
     {"majority_bias", "hold_dead_zone"}),
    ("too few events", lambda: healthy(50), {"insufficient_data"}),
]


@pytest.mark.parametrize(("name", "make", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule_table(name: str, make, expected: set[str]) -> None:
    actions, conf = make()
    found = checks(actions, conf)
    assert expected <= found, (name, found)


def test_narrow_range_alone() -> None:
    draw = RNG.random(400)
    conf = np.where(draw < 0.06, 0.2, np.where(draw < 0.12, 0.99, RNG.uniform(0.70, 0.78, 400)))
    found = checks(healthy()[0], conf)
    assert "narrow_range" in found
    assert "collapsed_confidence" not in found


def test_p10_equal_p90_is_constant_even_with_outliers() -> None:
    conf = np.full(400, 0.6150)
    conf[:30] = np.linspace(0, 1, 30)  # std well above 0.01, but P10 == P90
    assert "constant_output" in checks(healthy()[0], conf)


def test_no_votes_is_insufficient_only() -> None:
    assert checks(np.empty(0, np.int8), np.empty(0)) == {"insufficient_data"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 1.5, allow_nan=False)), min_size=2, max_size=300),
       st.randoms())
def test_order_of_events_does_not_change_the_verdict(votes, rnd) -> None:
    actions = np.array([a for a, _ in votes], np.int8)
    conf = np.array([c for _, c in votes])
    shuffled = list(votes)
    rnd.shuffle(shuffled)
    a2 = np.array([a for a, _ in shuffled], np.int8)
    c2 = np.array([c for _, c in shuffled])
    assert checks(actions, conf, None) == checks(a2, c2, None)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=200))
def test_statistics_equal_a_naive_reference(values) -> None:
    conf = np.array(values)
    stats = model_stats(np.zeros(len(values), np.int8), conf, T)
    assert stats.conf_std == pytest.approx(statistics.pstdev(values), abs=1e-9)
    assert stats.conf_mean == pytest.approx(statistics.fmean(values), abs=1e-9)
    ordered = sorted(values)

    def pct(q: float) -> float:  # numpy's default "linear" percentile, written out
        pos = (len(ordered) - 1) * q
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    assert stats.p10 == pytest.approx(pct(0.10), abs=1e-9)
    assert stats.p90 == pytest.approx(pct(0.90), abs=1e-9)


def defects(**kw) -> VoteDefects:
    base = {"present": 100, "inactive": 0, "invalid_confidence": {"nan": 0}, "above_one": 0,
            "bad_votes": {"unknown_action": 0}}
    base.update(kw)
    return VoteDefects(**base)


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, set()),
    ({"invalid_confidence": {"nan": 1}}, {"invalid_confidence"}),
    ({"above_one": 1}, {"confidence_above_one"}),
    ({"bad_votes": {"unknown_action": 2}}, {"malformed_votes"}),
    ({"inactive": 51}, {"mostly_inactive"}),
    ({"inactive": 50}, set()),
])
def test_defect_rules(kw, expected) -> None:
    assert {f.check for f in judge_defects(defects(**kw), T, subject="m")} == expected


def test_loosened_invalid_fraction_tolerates_a_few() -> None:
    loose = Thresholds(invalid_max_fraction=0.05)
    assert judge_defects(defects(invalid_confidence={"nan": 3}), loose, subject="m") == []
    assert judge_defects(defects(invalid_confidence={"nan": 6}), loose, subject="m") != []
