"""A seeded regime-switching random walk: the embedded default source for the demo, tests and benchmark.

Each symbol draws from its own generator seeded by ``(seed, crc32(symbol))``, so a symbol's bars do not
depend on which other symbols were asked for. Regimes (calm, trending up, trending down, volatile) last
an exponential number of hours and switch to a different regime; shocks are Student-t (fat tails).
A few short outages are cut out of each series by default, so gap handling is exercised by the demo.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence

import numpy as np

from qtsafe.dataset.candles import NS_PER_SECOND, SECONDS_PER_YEAR, Candles

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "ADAUSDT", "SOLUSDT")
# A fixed end keeps the demo reproducible to the byte: same seed, same file checksum.
DEFAULT_END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# (name, annualised drift, annualised volatility, mean duration in hours)
REGIMES: tuple[tuple[str, float, float, float], ...] = (
    ("calm", 0.0, 0.35, 60.0),
    ("trend_up", 2.5, 0.60, 30.0),
    ("trend_down", -2.5, 0.75, 24.0),
    ("volatile", 0.0, 1.40, 12.0),
)
_START_PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "BNBUSDT": 550.0, "ADAUSDT": 0.45, "SOLUSDT": 150.0}
_T_DOF = 4.0


def _regime_path(rng: np.random.Generator, n: int, interval_s: int) -> np.ndarray:
    """Regime index per bar, drawn as whole regime spells (vectorised: no per-bar loop)."""
    mean_bars = np.array([max(hours * 3600.0 / interval_s, 1.0) for _, _, _, hours in REGIMES])
    spells = int(n / mean_bars.min()) + 16
    steps = rng.integers(1, len(REGIMES), size=spells)  # never "switch" into the same regime
    regimes = (rng.integers(0, len(REGIMES)) + np.cumsum(steps)) % len(REGIMES)
    lengths = np.maximum(1, np.ceil(rng.exponential(mean_bars[regimes]))).astype(np.int64)
    while lengths.sum() < n:  # pragma: no cover - 16 spare spells make this vanishingly rare
        lengths = np.append(lengths, lengths)
        regimes = np.append(regimes, regimes)
    return np.repeat(regimes, lengths)[:n]


def generate_symbol(symbol: str, *, days: int, interval_s: int, seed: int, end: dt.datetime = DEFAULT_END,
                    outages: bool = True) -> Candles:
    """``days`` of ``interval_s`` bars ending just before ``end`` for one symbol."""
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode("utf-8"))])
    n = int(days * 86400 // interval_s)
    dt_years = interval_s / SECONDS_PER_YEAR
    regime = _regime_path(rng, n, interval_s)
    drift = np.array([r[1] for r in REGIMES])[regime]
    vol = np.array([r[2] for r in REGIMES])[regime]
    shocks = rng.standard_t(_T_DOF, size=n) / np.sqrt(_T_DOF / (_T_DOF - 2.0))  # unit variance
    log_ret = (drift - 0.5 * vol**2) * dt_years + vol * np.sqrt(dt_years) * shocks
    start = _START_PRICES.get(symbol, float(np.exp(rng.uniform(np.log(0.5), np.log(2_000.0)))))
    close = start * np.exp(np.cumsum(log_ret))
    open_ = np.empty(n)
    open_[0] = start
    open_[1:] = close[:-1]
    bar_sigma = vol * np.sqrt(dt_years)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5, n)) * bar_sigma)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5, n)) * bar_sigma)
    volume = rng.lognormal(np.log(1_000.0), 0.4, n) * (1.0 + np.abs(log_ret) / bar_sigma)
    end_ns = int(end.timestamp()) * NS_PER_SECOND
    step = interval_s * NS_PER_SECOND
    ts = end_ns - step * np.arange(n, 0, -1, dtype=np.int64)
    candles = Candles(symbol, ts, open_, high, low, close, volume)
    if outages and n > 100:
        keep = np.ones(n, dtype=bool)
        for _ in range(int(rng.integers(0, 3))):  # 0-2 outages of 1-36 bars, away from the ends
            length = int(rng.integers(1, 37))
            where = int(rng.integers(n // 10, n - n // 10 - length))
            keep[where:where + length] = False
        candles = candles.select(keep)
    return candles


def generate(symbols: Sequence[str], *, days: int, interval_s: int, seed: int, end: dt.datetime = DEFAULT_END,
             outages: bool = True) -> dict[str, Candles]:
    """Bars for every symbol, keyed in the order given."""
    return {s: generate_symbol(s, days=days, interval_s=interval_s, seed=seed, end=end, outages=outages)
            for s in symbols}
