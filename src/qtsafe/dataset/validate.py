"""Put each symbol's bars on a regular UTC grid and count everything wrong with them.

A missing bar stays missing (``present`` is False and its prices are NaN): nothing downstream may splice
the bars on either side of a gap together. Bars that are present but unusable (conflicting duplicates,
non-positive or NaN prices, high < low) are masked the same way, and every case is counted for the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from qtsafe.dataset.candles import NS_PER_SECOND, Candles, format_span
from qtsafe.errors import InputError, InsufficientDataError

OFF_GRID_MAX_FRACTION = 0.01  # more than this off the grid means the interval (or the data) is wrong


@dataclasses.dataclass(frozen=True)
class SymbolQuality:
    """What was found in one symbol's rows; every count is shown in the report."""

    symbol: str
    rows: int  # rows read from the source
    outside_range: int  # rows older than the --days range (not an error)
    off_grid: int  # rows whose timestamp is not on the interval grid: dropped
    duplicates: int  # extra copies of an identical row: collapsed
    conflicting: int  # timestamps with differing rows: bar masked (which one is true is unknowable)
    nan_prices: int
    non_positive: int
    high_below_low: int
    outside_high_low: int  # open or close outside [low, high]
    bad_volume: int  # NaN or negative volume
    invalid_bars: int  # bars with at least one of the five defects above
    first_invalid: int | None  # ns of the first such bar, for the error message
    first: int | None  # ns, first bar in range
    last: int | None
    expected_bars: int  # grid bars in the whole range
    present_bars: int  # usable bars
    gaps: int  # runs of bars missing from the data between first and last
    missing_bars: int
    longest_gap: int  # bars

    @property
    def coverage(self) -> float:
        return self.present_bars / self.expected_bars if self.expected_bars else 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class GridSeries:
    """One symbol on the grid from its first to its last bar; NaN prices where not ``present``."""

    symbol: str
    start_ns: int
    interval_ns: int
    present: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quality: SymbolQuality

    def __len__(self) -> int:
        return int(self.present.shape[0])

    def times(self, index: np.ndarray) -> np.ndarray:
        """int64 ns timestamps of grid positions."""
        return self.start_ns + index.astype(np.int64) * self.interval_ns

    def truncated(self, length: int) -> GridSeries:
        """The first ``length`` bars only: what was known at bar ``length - 1``."""
        return dataclasses.replace(
            self, present=self.present[:length], open=self.open[:length], high=self.high[:length],
            low=self.low[:length], close=self.close[:length], volume=self.volume[:length],
        )


def spacing_of(candles: Candles) -> int | None:
    """The most common gap between distinct timestamps, in ns (None with fewer than two bars)."""
    ts = candles.ts if bool(np.all(candles.ts[1:] >= candles.ts[:-1])) else np.sort(candles.ts)
    steps = np.diff(ts)
    steps = np.sort(steps[steps > 0])  # sorted: the mode is the longest run of equal values
    if steps.shape[0] == 0:
        return None
    starts = np.flatnonzero(np.concatenate(([True], steps[1:] != steps[:-1])))
    lengths = np.diff(np.append(starts, steps.shape[0]))
    return int(steps[starts[np.argmax(lengths)]])


def resolve_interval(candles: Mapping[str, Candles], interval_s: int | None) -> int:
    """The bar interval in seconds: checked against every symbol when given, inferred when not."""
    spacings = {symbol: spacing_of(c) for symbol, c in candles.items()}
    known = {s: v for s, v in spacings.items() if v is not None}
    if interval_s is not None:
        for symbol, spacing in known.items():
            if spacing != interval_s * NS_PER_SECOND:
                raise InputError(f"{symbol}: bars are {_ns_span(spacing)} apart (most common spacing), "
                                 f"not {format_span(interval_s)} as --interval says")
        return interval_s
    if not known:
        raise InsufficientDataError("every symbol is too short: fewer than 2 bars, cannot infer the interval")
    distinct = sorted(set(known.values()))
    if len(distinct) > 1:
        shown = ", ".join(f"{s} {_ns_span(v)}" for s, v in list(known.items())[:6])
        raise InputError(f"symbols disagree on the bar interval ({shown}); pass --interval or fewer --symbols")
    if distinct[0] % NS_PER_SECOND:
        raise InputError(f"bar spacing {distinct[0]} ns is not a whole number of seconds")
    return distinct[0] // NS_PER_SECOND


def _ns_span(ns: int) -> str:
    return format_span(ns // NS_PER_SECOND) if ns % NS_PER_SECOND == 0 else f"{ns} ns"


def to_grid(candles: Candles, *, interval_ns: int, range_start: int, range_end: int) -> GridSeries:
    """Regularise one symbol's bars onto ``range_start + k * interval_ns`` and count its defects."""
    rows = len(candles)
    in_range = (candles.ts >= range_start) & (candles.ts <= range_end)
    c = candles.select(in_range)
    on_grid = (c.ts - range_start) % interval_ns == 0
    off_grid = int((~on_grid).sum())
    if off_grid > OFF_GRID_MAX_FRACTION * max(len(c), 1):
        bad = int(c.ts[~on_grid][0])
        raise InputError(f"{c.symbol}: {off_grid:,} of {len(c):,} timestamps are off the "
                         f"{_ns_span(interval_ns)} grid (e.g. {np.datetime64(bad, 'ns')}Z); check --interval")
    c = c.select(on_grid)
    if c.ts.shape[0] > 1 and not bool(np.all(c.ts[1:] >= c.ts[:-1])):  # sources are usually sorted already
        c = c.select(np.argsort(c.ts, kind="stable"))

    values = np.column_stack([c.open, c.high, c.low, c.close, c.volume]) if len(c) else np.empty((0, 5))
    new = np.ones(len(c), dtype=bool)
    new[1:] = c.ts[1:] != c.ts[:-1]
    first_row = np.flatnonzero(new)
    uniq_ts = c.ts[first_row]
    conflict_group = np.zeros(first_row.shape[0], dtype=bool)
    duplicates = 0
    if first_row.shape[0] < len(c):
        group = np.cumsum(new) - 1
        reference = values[first_row][group]
        same = (values == reference) | (np.isnan(values) & np.isnan(reference))
        conflict_group[group[~same.all(axis=1)]] = True
        counts = np.diff(np.append(first_row, len(c)))
        duplicates = int((counts[~conflict_group] - 1).sum())
    conflicting = int(conflict_group.sum())

    bars = values[first_row]
    o, h, lo, cl, vol = (bars[:, i] for i in range(5))
    prices = bars[:, :4]
    finite = np.isfinite(prices).all(axis=1)
    nan_prices = ~finite
    with np.errstate(invalid="ignore"):
        # Each bar is counted under its first defect in this order, so one bad number is one count.
        non_positive = finite & (prices <= 0).any(axis=1)
        high_below_low = finite & ~non_positive & (h < lo)
        outside = finite & ~non_positive & ~high_below_low & ((o > h) | (o < lo) | (cl > h) | (cl < lo))
        bad_volume = ~np.isfinite(vol) | (vol < 0)
    invalid = nan_prices | non_positive | high_below_low | outside | bad_volume

    expected = int((range_end - range_start) // interval_ns) + 1
    if uniq_ts.shape[0] == 0:
        empty = np.zeros(0)
        quality = SymbolQuality(candles.symbol, rows, int((~in_range).sum()), off_grid, 0, 0, 0, 0, 0, 0, 0, 0,
                                None, None, None, expected, 0, 0, 0, 0)
        return GridSeries(candles.symbol, range_start, interval_ns, np.zeros(0, dtype=bool), empty, empty,
                          empty, empty, empty, quality)

    index = (uniq_ts - uniq_ts[0]) // interval_ns
    length = int(index[-1]) + 1
    usable = ~invalid & ~conflict_group
    present = np.zeros(length, dtype=bool)
    present[index[usable]] = True
    in_data = np.zeros(length, dtype=bool)
    in_data[index] = True
    columns = []
    for column in (o, h, lo, cl, vol):
        grid = np.full(length, np.nan)
        grid[index[usable]] = column[usable]
        columns.append(grid)
    gap_runs = run_lengths(~in_data)
    quality = SymbolQuality(
        symbol=candles.symbol, rows=rows, outside_range=int((~in_range).sum()), off_grid=off_grid,
        duplicates=duplicates, conflicting=conflicting, nan_prices=int(nan_prices.sum()),
        non_positive=int(non_positive.sum()), high_below_low=int(high_below_low.sum()),
        outside_high_low=int(outside.sum()), bad_volume=int(bad_volume.sum()), invalid_bars=int(invalid.sum()),
        first_invalid=int(uniq_ts[invalid][0]) if invalid.any() else None,
        first=int(uniq_ts[0]), last=int(uniq_ts[-1]), expected_bars=expected, present_bars=int(present.sum()),
        gaps=int(gap_runs.shape[0]), missing_bars=int(gap_runs.sum()),
        longest_gap=int(gap_runs.max()) if gap_runs.shape[0] else 0,
    )
    o_grid, h_grid, l_grid, c_grid, v_grid = columns
    return GridSeries(candles.symbol, int(uniq_ts[0]), interval_ns, present, o_grid, h_grid, l_grid, c_grid, v_grid,
                      quality)


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a boolean array."""
    if mask.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def segments(present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) of every run of present bars."""
    edges = np.diff(np.concatenate(([0], present.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
