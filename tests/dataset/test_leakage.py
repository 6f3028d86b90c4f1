"""Property: rewriting prices after time t changes nothing that ends at or before t."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qtsafe.dataset.builder import DatasetRequest, build_arrays
from qtsafe.dataset.candles import Candles
from qtsafe.dataset.features import FeatureParams, compute_grid, resolve
from qtsafe.dataset.splits import SplitSpec
from qtsafe.dataset.synthetic import generate_symbol


def perturb_after(c: Candles, t_ns: int, kind: str, size: float, seed: int) -> Candles:
    """Scale every bar after t by its own factor: prices really change, and each bar stays valid."""
    rng = np.random.default_rng(seed)
    n = len(c)
    if kind == "drift":
        factor = np.exp(size * np.linspace(0.0, 1.0, n))
    elif kind == "noise":
        factor = np.exp(rng.normal(0.0, size, n))
    else:  # a crash to a new level (with a little noise: a pure rescale leaves log returns unchanged)
        factor = (1.0 - 0.9 * size) * np.exp(rng.normal(0.0, 0.001, n))
    factor = np.where(c.ts > t_ns, factor, 1.0)
    volume = np.where(c.ts > t_ns, rng.lognormal(6.0, 1.0, n), c.volume)
    return dataclasses.replace(c, open=c.open * factor, high=c.high * factor, low=c.low * factor,
                               close=c.close * factor, volume=volume)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cut=st.floats(0.35, 0.9),
    kind=st.sampled_from(["drift", "noise", "crash"]),
    size=st.floats(0.001, 0.5),
    rule=st.sampled_from(["close", "barrier"]),
    outages=st.booleans(),
)
def test_changing_prices_after_t_leaves_every_window_and_feature_up_to_t_unchanged(
    seed: int, cut: float, kind: str, size: float, rule: str, outages: bool
) -> None:
    c = generate_symbol("BTCUSDT", days=25, interval_s=3600, seed=seed, outages=outages)
    t_ns = int(c.ts[int(cut * len(c))])
    changed = perturb_after(c, t_ns, kind, size, seed)
    assert not np.array_equal(changed.close, c.close)

    request = DatasetRequest(days=25, normalize="window", label_rule=rule, split=SplitSpec((1.0, 0.0, 0.0)))
    before = build_arrays({"BTCUSDT": c}, request)
    after = build_arrays({"BTCUSDT": changed}, request)

    # Features on the grid: every row at or before t is bit-for-bit the same.
    params = FeatureParams(interval_s=3600)
    features = resolve(list(request.features), params)
    grid_a, grid_b = before.grids["BTCUSDT"], after.grids["BTCUSDT"]
    k = int((t_ns - grid_a.start_ns) // grid_a.interval_ns)
    fa, fb = compute_grid(features, grid_a, params), compute_grid(features, grid_b, params)
    np.testing.assert_array_equal(fa[:k + 1], fb[:k + 1])

    # Windows ending at or before t: the same samples with the same values.
    past_a, past_b = before.timestamps <= t_ns, after.timestamps <= t_ns
    np.testing.assert_array_equal(before.timestamps[past_a], after.timestamps[past_b])
    np.testing.assert_array_equal(before.X[past_a], after.X[past_b])
    # Labels whose whole span ends by t are the same too.
    settled_a, settled_b = before.label_end <= t_ns, after.label_end <= t_ns
    np.testing.assert_array_equal(before.y[settled_a], after.y[settled_b])

    # The perturbation is not vacuous: later rows (where warm) and later windows do change.
    later = np.isfinite(fa[k + 1:]).all(axis=1)
    if later.any():
        assert not np.array_equal(fa[k + 1:][later], fb[k + 1:][later])
    if (~past_a).any():
        assert not np.array_equal(before.X[~past_a], after.X[~past_b])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.floats(0.01, 0.5), kind=st.sampled_from(["drift", "noise", "crash"]))
def test_train_statistics_ignore_every_price_from_the_val_cutoff_on(seed: int, size: float, kind: str) -> None:
    c = generate_symbol("ETHUSDT", days=30, interval_s=3600, seed=seed, outages=False)
    request = DatasetRequest(days=30, normalize="train")
    before = build_arrays({"ETHUSDT": c}, request)
    changed = perturb_after(c, before.cut.val_start - 1, kind, size, seed)
    after = build_arrays({"ETHUSDT": changed}, request)
    np.testing.assert_array_equal(before.normalization["mean"], after.normalization["mean"])
    np.testing.assert_array_equal(before.normalization["std"], after.normalization["std"])
    np.testing.assert_array_equal(before.X[before.split == 0], after.X[after.split == 0])
    np.testing.assert_array_equal(before.y[before.split == 0], after.y[after.split == 0])
    assert not np.array_equal(before.X[before.split == 1], after.X[after.split == 1])
