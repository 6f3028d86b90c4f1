"""The feature registry: every feature is causal (the value at bar t uses bars at or before t only).

Features are computed on each gap-free run of bars separately, so no value ever mixes the bars on
both sides of a gap; the first ``warmup`` bars of every run are NaN and never reach a window.

Adding a feature is one decorated function::

    @register("range_pct", doc="(high - low) / close of the bar", warmup=lambda p: 0)
    def _range_pct(bars: Bars, p: FeatureParams) -> np.ndarray:
        return (bars.high - bars.low) / bars.close

A feature returns a float64 array as long as the run; values in its warm-up are ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qtsafe.dataset.candles import SECONDS_PER_YEAR, format_span
from qtsafe.dataset.defaults import DEFAULT_FEATURES as DEFAULT_FEATURES
from qtsafe.dataset.validate import GridSeries, segments
from qtsafe.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    """Feature settings, in bars unless the name says otherwise; all recorded in the dataset metadata."""

    interval_s: int
    rsi_period: int = 14
    # Wilder smoothing has infinite memory: k bars into a run its starting point still weighs
    # (1 - 1/period)^k. After 8 periods (112 bars) the RSI is within ~0.04 points of one started far
    # earlier (measured on the synthetic walk; 6 periods left 0.12); see docs/dataset.md.
    rsi_warmup_periods: int = 8
    ma_fast: int = 20
    ma_slow: int = 50
    vol_window: int = 24

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ConfigError("interval must be positive")
        if min(self.rsi_period, self.ma_fast, self.vol_window) < 2 or self.rsi_warmup_periods < 1:
            raise ConfigError("feature windows must be at least 2 bars")
        if self.ma_fast >= self.ma_slow:
            raise ConfigError(f"ma_cross needs a fast SMA shorter than the slow one ({self.ma_fast} >= {self.ma_slow})")


@dataclasses.dataclass(frozen=True, eq=False)
class Bars:
    """One gap-free run of bars: no NaN, no missing bar inside."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.close.shape[0])


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    doc: str
    compute: Callable[[Bars, FeatureParams], np.ndarray]
    warmup: Callable[[FeatureParams], int]  # leading bars of a run whose value is not yet valid
    check: Callable[[FeatureParams], None] | None = None  # raise ConfigError if unusable at these params


REGISTRY: dict[str, Feature] = {}


def register(name: str, *, doc: str, warmup: Callable[[FeatureParams], int],
             check: Callable[[FeatureParams], None] | None = None,
             ) -> Callable[[Callable[[Bars, FeatureParams], np.ndarray]], Callable[[Bars, FeatureParams], np.ndarray]]:
    """Add a feature to the registry under ``name`` (see the module docstring)."""

    def add(fn: Callable[[Bars, FeatureParams], np.ndarray]) -> Callable[[Bars, FeatureParams], np.ndarray]:
        if name in REGISTRY:
            raise ValueError(f"feature {name!r} registered twice")
        REGISTRY[name] = Feature(name, doc, fn, warmup, check)
        return fn

    return add


def resolve(names: Sequence[str], params: FeatureParams) -> tuple[Feature, ...]:
    """The registered features for ``names``, checked against the parameters (e.g. the interval)."""
    if not names:
        raise ConfigError("--features: at least one feature is needed")
    out = []
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"--features: unknown feature {name!r} (known: {', '.join(sorted(REGISTRY))})")
        feature = REGISTRY[name]
        if feature.check is not None:
            feature.check(params)
        out.append(feature)
    if len(set(names)) != len(names):
        raise ConfigError("--features: a feature is listed twice")
    return tuple(out)


def warmup_of(features: Sequence[Feature], params: FeatureParams) -> int:
    return max(f.warmup(params) for f in features)


def compute_run(features: Sequence[Feature], bars: Bars, params: FeatureParams) -> np.ndarray:
    """(len(bars), F) float64 for one gap-free run; the first ``warmup_of`` rows are NaN."""
    out = np.full((len(bars), len(features)), np.nan)
    for j, feature in enumerate(features):
        values = np.asarray(feature.compute(bars, params), dtype=np.float64)
        if values.shape != (len(bars),):
            raise AssertionError(f"feature {feature.name} returned shape {values.shape} for {len(bars)} bars")
        out[:, j] = values
    out[: warmup_of(features, params)] = np.nan
    return out


def compute_grid(features: Sequence[Feature], grid: GridSeries, params: FeatureParams,
                 min_run: int = 1) -> np.ndarray:
    """(len(grid), F) float64: every gap-free run computed on its own; NaN elsewhere.

    Runs shorter than ``min_run`` bars cannot yield a sample, so they are skipped.
    """
    out = np.full((len(grid), len(features)), np.nan)
    warmup = warmup_of(features, params)
    starts, stops = segments(grid.present)
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):  # one iteration per gap, not per window
        if stop - start <= warmup or stop - start < min_run:
            continue
        bars = Bars(grid.open[start:stop], grid.high[start:stop], grid.low[start:stop],
                    grid.close[start:stop], grid.volume[start:stop])
        out[start:stop] = compute_run(features, bars, params)
    return out


# -- building blocks ---------------------------------------------------------------------------------


# pandas' rolling windows are O(bars) with compensated sums, several times faster than reducing a
# sliding-window view; they are trailing (causal) and NaN whenever the window holds a NaN.


def _series(x: np.ndarray) -> Any:
    import pandas as pd  # lazily: `build-dataset --help` must not pay for pandas

    return pd.Series(x)


def trailing_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of x[t-n+1 .. t] at t; NaN for t < n-1."""
    return _series(x).rolling(n, min_periods=n).mean().to_numpy()


def trailing_std(x: np.ndarray, n: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of x[t-n+1 .. t] at t; NaN for t < n-1."""
    return _series(x).rolling(n, min_periods=n).std(ddof=1).to_numpy()


def wilder_average(x: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing: a_t = a_{t-1} + (x_t - a_{t-1}) / period, started at a_0 = x_0.

    That start is the one the ``ta`` package (and pandas ``ewm(adjust=False)``) uses, so values equal
    ``ta.momentum.RSIIndicator`` to rounding; the warm-up discards the bars where the start still matters.
    """
    return _series(x).ewm(alpha=1.0 / period, adjust=False).mean().to_numpy()


def _bars_per_hour(p: FeatureParams) -> int:
    return 3600 // p.interval_s


def _check_hourly(p: FeatureParams) -> None:
    if p.interval_s > 3600 or 3600 % p.interval_s:
        raise ConfigError(f"returns_1h needs a bar interval that divides one hour, not {format_span(p.interval_s)}")


# -- the registry --------------------------------------------------------------------------------------


@register("rsi", doc="RSI, Wilder smoothing over rsi_period bars (0-100)",
          warmup=lambda p: p.rsi_period * p.rsi_warmup_periods)
def _rsi(bars: Bars, p: FeatureParams) -> np.ndarray:
    change = np.diff(bars.close, prepend=bars.close[0])  # the first bar has no change: 0, as in `ta`
    gain = wilder_average(np.where(change > 0, change, 0.0), p.rsi_period)
    loss = wilder_average(np.where(change < 0, -change, 0.0), p.rsi_period)
    total = gain + loss
    # A flat market (no gain, no loss) is neutral, 50; `ta` says 100 there, which reads as "overbought".
    ratio = np.divide(gain, total, out=np.full_like(total, 0.5), where=total > 0)
    return 100.0 * ratio


@register("ma_cross", doc="SMA(close, ma_fast) / SMA(close, ma_slow) - 1", warmup=lambda p: p.ma_slow - 1)
def _ma_cross(bars: Bars, p: FeatureParams) -> np.ndarray:
    return trailing_mean(bars.close, p.ma_fast) / trailing_mean(bars.close, p.ma_slow) - 1.0


@register("volatility", doc="std of log returns over vol_window bars, annualised for the bar interval (365 d)",
          warmup=lambda p: p.vol_window)
def _volatility(bars: Bars, p: FeatureParams) -> np.ndarray:
    log_ret = np.full(len(bars), np.nan)
    log_ret[1:] = np.log(bars.close[1:] / bars.close[:-1])  # a ratio keeps precision a difference of logs loses
    return trailing_std(log_ret, p.vol_window) * np.sqrt(SECONDS_PER_YEAR / p.interval_s)


@register("returns_1h", doc="log return over the last hour of bars: ln(close_t / close_{t - 1h})",
          warmup=_bars_per_hour, check=_check_hourly)
def _returns_1h(bars: Bars, p: FeatureParams) -> np.ndarray:
    k = _bars_per_hour(p)
    out = np.full(len(bars), np.nan)
    out[k:] = np.log(bars.close[k:] / bars.close[:-k])
    return out
