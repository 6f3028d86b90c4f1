"""Features against independent references: `ta` for RSI, pandas rolling for the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from ta.momentum import RSIIndicator

from qtsafe.dataset.builder import DatasetRequest, build_arrays
from qtsafe.dataset.candles import NS_PER_SECOND
from qtsafe.dataset.features import (
    REGISTRY,
    Bars,
    Feature,
    FeatureParams,
    compute_grid,
    resolve,
)
from qtsafe.dataset.synthetic import generate_symbol
from qtsafe.dataset.validate import to_grid
from qtsafe.errors import ConfigError
from tests.dataset.conftest import make_candles


def bars_of(c) -> Bars:
    return Bars(c.open, c.high, c.low, c.close, c.volume)


@pytest.mark.parametrize(("seed", "period"), [(1, 14), (2, 14), (3, 7), (4, 21)])
def test_rsi_equals_ta_after_warmup(seed: int, period: int) -> None:
    c = generate_symbol("BTCUSDT", days=40, interval_s=3600, seed=seed, outages=False)
    params = FeatureParams(interval_s=3600, rsi_period=period)
    ours = REGISTRY["rsi"].compute(bars_of(c), params)
    reference = RSIIndicator(pd.Series(c.close), window=period).rsi().to_numpy()
    warmup = REGISTRY["rsi"].warmup(params)
    assert warmup == 8 * period
    assert np.isfinite(reference[warmup:]).all()
    np.testing.assert_allclose(ours[warmup:], reference[warmup:], rtol=0, atol=1e-6)
    assert np.abs(ours[warmup:] - reference[warmup:]).max() < 1e-9  # in fact equal to rounding


def test_rsi_restarts_after_a_gap_instead_of_splicing() -> None:
    c = generate_symbol("ETHUSDT", days=30, interval_s=3600, seed=5, outages=False)
    keep = np.ones(len(c), dtype=bool)
    keep[300:306] = False  # a 6-bar outage
    grid = to_grid(c.select(keep), interval_ns=3600 * NS_PER_SECOND, range_start=int(c.ts[0]),
                   range_end=int(c.ts[-1]))
    params = FeatureParams(interval_s=3600)
    (rsi,) = resolve(["rsi"], params)
    values = compute_grid([rsi], grid, params)[:, 0]
    warmup = rsi.warmup(params)
    after = RSIIndicator(pd.Series(c.close[306:]), window=14).rsi().to_numpy()  # ta started at the run
    np.testing.assert_allclose(values[306 + warmup:], after[warmup:], rtol=0, atol=1e-6)
    spliced = RSIIndicator(pd.Series(c.close[keep]), window=14).rsi().to_numpy()[300:]  # what splicing gives
    assert np.abs(values[306 + warmup:] - spliced[warmup:]).max() > 1e-4
    assert np.isnan(values[300:306 + warmup]).all()  # the gap and the new run's warm-up never reach a window
    before = RSIIndicator(pd.Series(c.close[:300]), window=14).rsi().to_numpy()
    np.testing.assert_allclose(values[warmup:300], before[warmup:], rtol=0, atol=1e-6)


def test_rsi_of_a_flat_market_is_neutral() -> None:
    flat = np.full(200, 100.0)
    values = REGISTRY["rsi"].compute(Bars(flat, flat, flat, flat, flat), FeatureParams(interval_s=3600))
    assert np.all(values == 50.0)


def test_ma_cross_is_fast_over_slow_sma_minus_one() -> None:
    c = generate_symbol("SOLUSDT", days=10, interval_s=300, seed=3, outages=False)
    params = FeatureParams(interval_s=300, ma_fast=20, ma_slow=50)
    ours = REGISTRY["ma_cross"].compute(bars_of(c), params)
    sma = {n: np.convolve(c.close, np.ones(n) / n, mode="valid") for n in (20, 50)}  # sma[n][i]: bars i..i+n-1
    reference = np.full(len(c), np.nan)
    reference[49:] = sma[20][30:] / sma[50] - 1
    np.testing.assert_allclose(ours[49:], reference[49:], rtol=1e-9, atol=1e-12)
    assert REGISTRY["ma_cross"].warmup(params) == 49


@pytest.mark.parametrize(("interval_s", "bars_per_year"), [(300, 105_120), (3600, 8_760), (86_400, 365)])
def test_volatility_is_annualised_for_the_real_bar_interval(interval_s: int, bars_per_year: int) -> None:
    c = generate_symbol("BTCUSDT", days=400 if interval_s == 86_400 else 10, interval_s=interval_s, seed=4,
                        outages=False)
    params = FeatureParams(interval_s=interval_s, vol_window=24)
    ours = REGISTRY["volatility"].compute(bars_of(c), params)
    log_ret = np.log(c.close[1:] / c.close[:-1])
    raw = np.full(len(c), np.nan)
    raw[24:] = sliding_window_view(log_ret, 24).std(axis=1, ddof=1)  # returns t-23 .. t, i.e. closes t-24 .. t
    np.testing.assert_allclose(ours[24:], raw[24:] * np.sqrt(bars_per_year), rtol=1e-9)
    assert REGISTRY["volatility"].warmup(params) == 24


@pytest.mark.parametrize(("interval_s", "k"), [(300, 12), (900, 4), (3600, 1)])
def test_returns_1h_is_the_log_return_over_one_hour_of_bars(interval_s: int, k: int) -> None:
    c = generate_symbol("ADAUSDT", days=3, interval_s=interval_s, seed=6, outages=False)
    params = FeatureParams(interval_s=interval_s)
    ours = REGISTRY["returns_1h"].compute(bars_of(c), params)
    np.testing.assert_allclose(ours[k:], np.log(c.close[k:] / c.close[:-k]), rtol=1e-12)
    assert np.isnan(ours[:k]).all()
    assert REGISTRY["returns_1h"].warmup(params) == k


def test_returns_1h_refuses_an_interval_that_does_not_divide_an_hour() -> None:
    with pytest.raises(ConfigError, match="returns_1h needs a bar interval that divides one hour, not 2h"):
        resolve(["returns_1h"], FeatureParams(interval_s=7200))


def test_unknown_feature_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown feature 'macd'"):
        resolve(["rsi", "macd"], FeatureParams(interval_s=3600))


def test_the_registry_is_extended_with_one_function(monkeypatch: pytest.MonkeyPatch) -> None:
    def range_pct(bars: Bars, p: FeatureParams) -> np.ndarray:
        return (bars.high - bars.low) / bars.close

    monkeypatch.setitem(REGISTRY, "range_pct", Feature("range_pct", "bar range", range_pct, lambda p: 0))
    candles = make_candles(("BTCUSDT",))
    built = build_arrays(candles, DatasetRequest(features=("range_pct", "rsi"), normalize="window"))
    assert built.X.shape[1:] == (64, 2)
    assert built.warmup == REGISTRY["rsi"].warmup(built.feature_params)
