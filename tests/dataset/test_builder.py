"""build_arrays end to end in memory: gaps masked with exact counts, splits, normalisation, failures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qtsafe.dataset.builder import DatasetRequest, build_arrays
from qtsafe.dataset.candles import NS_PER_SECOND, Candles
from qtsafe.dataset.checks import leakage_checks
from qtsafe.dataset.features import REGISTRY, FeatureParams, compute_grid, resolve
from qtsafe.dataset.splits import SplitSpec
from qtsafe.errors import ConfigError, InputError, InsufficientDataError
from tests.dataset.conftest import make_candles

H = 3600 * NS_PER_SECOND


def with_gap(c: Candles, start: int, length: int) -> Candles:
    keep = np.ones(len(c), dtype=bool)
    keep[start:start + length] = False
    return c.select(keep)


def test_a_gap_drops_exactly_the_windows_and_labels_touching_it() -> None:
    c = make_candles(("BTCUSDT",))["BTCUSDT"]  # 720 clean hourly bars
    gapped = with_gap(c, 400, 3)
    built = build_arrays({"BTCUSDT": gapped}, DatasetRequest(split=SplitSpec((1.0, 0.0, 0.0))))
    counts = built.reports[0].counts
    lookback, h, warmup = 64, 4, built.warmup
    assert warmup == 112
    # Spans [t-63, t+4] that intersect the 3 missing bars: 64 + 4 + 3 - 1 positions.
    assert counts.dropped_gap == lookback + h + 3 - 1
    # Warm-up at the start of the series and again after the gap.
    assert counts.dropped_warmup == 2 * warmup
    assert counts.candidates == 720 - (lookback - 1) - h
    assert counts.kept == counts.candidates - counts.dropped_gap - counts.dropped_warmup - counts.purged
    missing = c.ts[400:403]
    start = built.timestamps - (lookback - 1) * H
    for gap_ts in missing:
        assert not np.any((start <= gap_ts) & (gap_ts <= built.label_end))
    # No window or label is spliced: each spans exactly T-1+h bars of wall-clock time.
    assert np.all(built.label_end - start == (lookback - 1 + h) * H)
    assert all(check.passed for check in leakage_checks(built))


def test_windows_are_the_feature_rows_ending_at_t() -> None:
    candles = make_candles(("BTCUSDT", "ETHUSDT"))
    built = build_arrays(candles, DatasetRequest(normalize="train"))
    params = FeatureParams(interval_s=3600)
    features = resolve(list(built.request.features), params)
    mean, std = built.normalization["mean"], built.normalization["std"]
    for index, symbol in enumerate(built.symbols):
        grid = built.grids[symbol]
        raw = compute_grid(features, grid, params)
        rows = np.flatnonzero(built.symbol_index == index)
        for i in rows[[0, len(rows) // 2, -1]]:
            t = int((built.timestamps[i] - grid.start_ns) // H)
            expected = ((raw[t - 63:t + 1] - mean) / std).astype(np.float32)
            np.testing.assert_array_equal(built.X[i], expected)
            assert built.y[i] == (grid.close[t + 4] / grid.close[t] - 1 >= 0.01)


def test_train_normalisation_uses_train_rows_only() -> None:
    candles = make_candles(("BTCUSDT", "ETHUSDT"))
    built = build_arrays(candles, DatasetRequest())
    params = FeatureParams(interval_s=3600)
    features = resolve(list(built.request.features), params)
    # Independent: the union of rows of the train windows, from the timestamps in the output.
    pooled = []
    for index, symbol in enumerate(built.symbols):
        grid = built.grids[symbol]
        raw = compute_grid(features, grid, params)
        ends = (built.timestamps[(built.symbol_index == index) & (built.split == 0)] - grid.start_ns) // H
        used = np.zeros(len(grid), dtype=bool)
        for t in ends:
            used[t - 63:t + 1] = True
        pooled.append(raw[used])
    rows = np.concatenate(pooled)
    np.testing.assert_allclose(built.normalization["mean"], rows.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(built.normalization["std"], rows.std(axis=0, ddof=1), rtol=1e-10)
    assert built.normalization["fit_rows"] == rows.shape[0]

    # Rewriting every price from the val cutoff on changes neither the statistics nor any train window.
    changed = {}
    for symbol, c in candles.items():
        after = c.ts >= built.cut.val_start
        factor = np.where(after, np.exp(np.linspace(0.0, 0.3, len(c))), 1.0)
        changed[symbol] = dataclasses.replace(c, open=c.open * factor, high=c.high * factor, low=c.low * factor,
                                              close=c.close * factor)
    rebuilt = build_arrays(changed, DatasetRequest())
    np.testing.assert_array_equal(rebuilt.normalization["mean"], built.normalization["mean"])
    np.testing.assert_array_equal(rebuilt.normalization["std"], built.normalization["std"])
    np.testing.assert_array_equal(rebuilt.X[rebuilt.split == 0], built.X[built.split == 0])
    assert not np.array_equal(rebuilt.X[rebuilt.split == 2], built.X[built.split == 2])


def test_window_normalisation_scales_each_window_by_itself() -> None:
    built = build_arrays(make_candles(("BTCUSDT",)), DatasetRequest(normalize="window"))
    means = built.X.mean(axis=1, dtype=np.float64)
    stds = built.X.std(axis=1, dtype=np.float64)
    assert np.abs(means).max() < 1e-5
    assert np.abs(stds - 1).max() < 1e-3
    assert built.normalization["mode"] == "window" and "mean" not in built.normalization


def test_embargo_and_explicit_cutoffs() -> None:
    candles = make_candles(("BTCUSDT",))
    ts = candles["BTCUSDT"].ts
    val_start, test_start = int(ts[500]), int(ts[610])
    split = SplitSpec(None, (val_start, test_start))
    built = build_arrays(candles, DatasetRequest(split=split, embargo_s=86400, purge_s=6 * 3600))
    assert built.label_end[built.split == 0].max() < val_start - 2 * H  # purge 6h > horizon 4h
    assert built.timestamps[built.split == 1].min() == val_start + 24 * H
    assert built.timestamps[built.split == 2].min() == test_start + 24 * H
    assert built.label_end[built.split == 1].max() < test_start
    assert all(check.passed for check in leakage_checks(built))


def test_barrier_labels_are_a_superset_of_close_labels() -> None:
    candles = make_candles(("BTCUSDT", "ETHUSDT"))
    close = build_arrays(candles, DatasetRequest(label_rule="close"))
    barrier = build_arrays(candles, DatasetRequest(label_rule="barrier"))
    np.testing.assert_array_equal(close.timestamps, barrier.timestamps)
    assert np.all(barrier.y >= close.y)  # the high at t+h is at least the close at t+h
    assert barrier.y.sum() > close.y.sum()


def test_five_minute_bars_convert_the_horizon_to_bars() -> None:
    candles = make_candles(("BTCUSDT",), days=4, interval_s=300)
    built = build_arrays(candles, DatasetRequest(days=4))
    assert (built.interval_s, built.horizon_bars) == (300, 48)
    assert np.all(built.label_end - built.timestamps == 48 * 300 * NS_PER_SECOND)


def test_a_symbol_too_short_is_skipped_when_others_are_not() -> None:
    candles = make_candles(("BTCUSDT", "ETHUSDT"))
    eth = candles["ETHUSDT"]
    candles["ETHUSDT"] = eth.select(np.arange(len(eth) - 150, len(eth)))
    built = build_arrays(candles, DatasetRequest())
    assert [r.status for r in built.reports] == ["ok", "too short"]
    assert set(built.symbol_index.tolist()) == {0}


def test_every_symbol_too_short() -> None:
    with pytest.raises(InsufficientDataError, match=r"every symbol is too short: need at least 180 1h bars "
                                                    r"\(warm-up 112 \+ lookback 64 \+ horizon 4\); most: 168"):
        build_arrays(make_candles(days=7), DatasetRequest())


def test_every_window_dropped() -> None:
    c = make_candles(("BTCUSDT",))["BTCUSDT"]
    choppy = c.select(np.arange(len(c)) % 100 != 99)  # a missing bar every 100: no run long enough
    with pytest.raises(InsufficientDataError, match=r"every window dropped: \d+ touch a gap, \d+ fall in"):
        build_arrays({"BTCUSDT": choppy}, DatasetRequest())


def test_an_empty_split_is_a_failure_unless_asked_for() -> None:
    candles = make_candles(("BTCUSDT",), days=12)
    with pytest.raises(InsufficientDataError, match="split val has no samples"):
        build_arrays(candles, DatasetRequest(split=SplitSpec((0.9, 0.05, 0.05)), embargo_s=86400))
    built = build_arrays(candles, DatasetRequest(split=SplitSpec((0.8, 0.2, 0.0))))
    assert (built.split == 2).sum() == 0 and (built.split == 1).sum() > 0


def test_corrupt_prices_are_refused_unless_masked() -> None:
    candles = make_candles(("BTCUSDT", "ETHUSDT"))
    candles["ETHUSDT"].close[300] = np.nan
    candles["ETHUSDT"].low[310] = -1.0
    with pytest.raises(InputError, match=r"ETHUSDT: 2 corrupt bar\(s\): 1 with NaN prices, 1 with non-positive "
                                         r"prices \(first at .*Z\).*--mask-invalid"):
        build_arrays(candles, DatasetRequest())
    built = build_arrays(candles, DatasetRequest(mask_invalid=True))
    report = built.reports[1]
    assert report.quality.invalid_bars == 2 and report.counts.dropped_gap > 0
    assert all(check.passed for check in leakage_checks(built))


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [({"horizon_s": 5400}, "--horizon 90m is not a whole number of 1h bars"),
     ({"lookback": 1}, "--lookback must be within"),
     ({"purge_s": 3600}, "--purge 1h is shorter than the horizon 4h"),
     ({"threshold": 0.0}, "--threshold must be within"),
     ({"normalize": "global"}, "--normalize must be one of")],
)
def test_bad_requests(request_kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_arrays(make_candles(("BTCUSDT",)), DatasetRequest(**request_kwargs))


def test_a_feature_that_peeks_ahead_fails_the_causality_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def next_close(bars, p):  # deliberately wrong: uses bar t+1
        out = np.full(len(bars), np.nan)
        out[:-1] = bars.close[1:] / bars.close[:-1]
        out[-1] = 1.0
        return out

    monkeypatch.setitem(REGISTRY, "peek", dataclasses.replace(REGISTRY["rsi"], name="peek", compute=next_close))
    built = build_arrays(make_candles(("BTCUSDT",)), DatasetRequest(features=("rsi", "peek")))
    failed = [check.check for check in leakage_checks(built) if not check.passed]
    assert failed == ["features use no bar after t (recomputed from truncated data)"]


def test_large_outputs_are_prefaulted_small_ones_are_plain() -> None:
    from qtsafe.dataset.windows import PREFAULT_MIN_BYTES, empty_prefaulted

    big = empty_prefaulted((PREFAULT_MIN_BYTES // 1024 + 1, 64, 4), np.float32)
    assert big.flags.writeable and big.flags.c_contiguous and big.dtype == np.float32
    big[-1] = 7.0
    assert float(big[-1].sum()) == 7.0 * 256
    small = empty_prefaulted((10, 64, 4), np.float32)
    assert small.base is None and small.shape == (10, 64, 4)
