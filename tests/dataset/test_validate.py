"""The grid: duplicates, conflicts, off-grid rows, gaps and corrupt bars, each counted; the interval."""

from __future__ import annotations

import numpy as np
import pytest

from qtsafe.dataset.candles import NS_PER_SECOND, Candles, format_span, parse_span, parse_symbols
from qtsafe.dataset.validate import resolve_interval, run_lengths, to_grid
from qtsafe.errors import ConfigError, InputError, InsufficientDataError

H = 3600 * NS_PER_SECOND
T0 = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z


def bars(hours: list[float], close: list[float] | None = None, **columns: list[float]) -> Candles:
    n = len(hours)
    c = np.asarray(close if close is not None else [100.0 + i for i in range(n)], dtype=float)
    cols = {
        "open": np.asarray(columns.get("open", c), dtype=float),
        "high": np.asarray(columns.get("high", c + 1), dtype=float),
        "low": np.asarray(columns.get("low", c - 1), dtype=float),
        "volume": np.asarray(columns.get("volume", [10.0] * n), dtype=float),
    }
    ts = (T0 + np.round(np.asarray(hours) * H)).astype(np.int64)
    return Candles("BTCUSDT", ts, cols["open"], cols["high"], cols["low"], c, cols["volume"])


def grid_of(c: Candles, first: float = 0, last: float | None = None):
    end = T0 + int((last if last is not None else max(c.ts - T0) / H) * H)
    return to_grid(c, interval_ns=H, range_start=T0 + int(first * H), range_end=end)


def test_a_clean_series_is_fully_present() -> None:
    g = grid_of(bars([0, 1, 2, 3]))
    q = g.quality
    assert g.present.tolist() == [True] * 4
    assert (q.present_bars, q.expected_bars, q.gaps, q.missing_bars, q.invalid_bars) == (4, 4, 0, 0, 0)
    assert q.coverage == 1.0


def test_unsorted_rows_are_sorted_by_time_not_text() -> None:
    g = grid_of(bars([3, 0, 2, 1], close=[40.0, 10.0, 30.0, 20.0]))
    assert g.close.tolist() == [10.0, 20.0, 30.0, 40.0]


def test_gaps_are_kept_as_missing_bars_and_counted() -> None:
    g = grid_of(bars([0, 1, 4, 5, 6, 9]))
    q = g.quality
    assert g.present.tolist() == [True, True, False, False, True, True, True, False, False, True]
    assert np.isnan(g.close[[2, 3, 7, 8]]).all()
    assert (q.gaps, q.missing_bars, q.longest_gap, q.present_bars) == (2, 4, 2, 6)


def test_identical_duplicates_collapse_and_conflicting_ones_are_masked() -> None:
    c = bars([0, 1, 1, 2, 2, 3], close=[10.0, 20.0, 20.0, 30.0, 35.0, 40.0])
    g = grid_of(c)
    q = g.quality
    assert (q.duplicates, q.conflicting) == (1, 1)
    assert g.present.tolist() == [True, True, False, True]  # 2h had two different closes: unknowable
    assert q.missing_bars == 0  # masked, not missing from the data


def test_off_grid_rows_are_dropped_and_counted() -> None:
    hours = [float(h) for h in range(200)] + [10.5]
    g = grid_of(bars(hours))
    assert g.quality.off_grid == 1
    assert g.quality.present_bars == 200


def test_many_off_grid_rows_mean_a_wrong_interval() -> None:
    with pytest.raises(InputError, match=r"BTCUSDT: 3 of 6 timestamps are off the 1h grid .*check --interval"):
        grid_of(bars([0, 0.5, 1, 1.5, 2, 2.5]), last=2.5)


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [("close", np.nan, "nan_prices"), ("close", 0.0, "non_positive"), ("open", -1.0, "non_positive"),
     ("high", 90.0, "high_below_low"), ("open", 500.0, "outside_high_low"), ("volume", -5.0, "bad_volume")],
)
def test_corrupt_bars_are_counted_and_masked(column: str, value: float, field: str) -> None:
    c = bars([0, 1, 2, 3])
    getattr(c, column)[2] = value
    g = grid_of(c)
    assert getattr(g.quality, field) == 1
    assert g.quality.invalid_bars == 1
    assert g.quality.first_invalid == T0 + 2 * H
    assert g.present.tolist() == [True, True, False, True]


def test_rows_before_the_range_are_left_out() -> None:
    g = grid_of(bars([0, 1, 2, 3, 4]), first=2)
    assert g.quality.outside_range == 2
    assert g.start_ns == T0 + 2 * H and len(g) == 3


def test_interval_is_inferred_from_the_most_common_spacing() -> None:
    assert resolve_interval({"A": bars([0, 1, 2, 5, 6])}, None) == 3600


def test_symbols_that_disagree_on_the_interval_are_refused() -> None:
    a = bars([0, 1, 2, 3])
    b = Candles("ETHUSDT", T0 + np.arange(4) * 300 * NS_PER_SECOND, a.open, a.high, a.low, a.close, a.volume)
    with pytest.raises(InputError, match=r"symbols disagree on the bar interval \(A 1h, B 5m\)"):
        resolve_interval({"A": a, "B": b}, None)
    with pytest.raises(InputError, match="B: bars are 5m apart .*not 1h as --interval says"):
        resolve_interval({"A": a, "B": b}, 3600)


def test_single_bars_cannot_give_an_interval() -> None:
    with pytest.raises(InsufficientDataError, match="fewer than 2 bars"):
        resolve_interval({"A": bars([0])}, None)


def test_run_lengths() -> None:
    assert run_lengths(np.array([1, 1, 0, 1, 0, 0, 0, 1], dtype=bool)).tolist() == [2, 1, 1]
    assert run_lengths(np.zeros(0, dtype=bool)).tolist() == []


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("1h", 3600), ("4h", 14400), ("1d", 86400), ("90m", 5400)])
def test_spans_round_trip(text: str, seconds: int) -> None:
    assert parse_span(text, "--x") == seconds
    assert parse_span(format_span(seconds), "--x") == seconds


@pytest.mark.parametrize("text", ["4", "0h", "-1h", "1y", "h", ""])
def test_bad_spans_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="not a duration"):
        parse_span(text, "--horizon")


def test_symbols_are_parsed_and_checked() -> None:
    assert parse_symbols("BTCUSDT, ETHUSDT,BTCUSDT") == ("BTCUSDT", "ETHUSDT")
    with pytest.raises(ConfigError, match="not a symbol name"):
        parse_symbols("../etc/passwd")
