"""Chronological train/val/test split on calendar cutoffs shared by every symbol.

A sample is the window ending at bar t with its label over (t, t + h]. With cutoffs c1 (val starts)
and c2 (test starts), ``purge`` >= the horizon and an optional ``embargo``::

    train:  t + purge <  c1                      (so every train label ends before c1)
    val:    t >= c1 + embargo  and  t + purge < c2
    test:   t >= c2 + embargo

Samples in between are purged and counted. No label of an earlier split reaches into a later one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np

from qtsafe.dataset.candles import iso_ns as _iso
from qtsafe.dataset.defaults import DEFAULT_SPLIT as DEFAULT_SPLIT
from qtsafe.errors import ConfigError, InputError
from qtsafe.timeutil import parse_utc

SPLIT_NAMES = ("train", "val", "test")
PURGED = -1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """Either fractions of the common calendar range or two explicit UTC cutoffs (ns)."""

    fractions: tuple[float, float, float] | None = (0.7, 0.15, 0.15)
    cutoffs: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        if self.fractions is not None:
            return ",".join(f"{f:g}" for f in self.fractions)
        assert self.cutoffs is not None
        return ",".join(_iso(c) for c in self.cutoffs)


@dataclasses.dataclass(frozen=True)
class Cutoffs:
    val_start: int  # ns
    test_start: int  # ns
    val_wanted: bool  # a split given a zero fraction may be empty; any other empty split is a failure
    test_wanted: bool


def parse_split(text: str) -> SplitSpec:
    """``0.7,0.15,0.15`` (train, val, test fractions) or ``2025-11-01,2025-12-01`` (val and test start, UTC)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if numbers:
        if len(numbers) != 3 or not all(math.isfinite(x) and x >= 0 for x in numbers):
            raise ConfigError(f"--split: expected three fractions train,val,test like 0.7,0.15,0.15, got {text!r}")
        if abs(sum(numbers) - 1.0) > 1e-6 or numbers[0] <= 0:
            raise ConfigError(f"--split: fractions must sum to 1 with a non-zero train share, got {text!r}")
        return SplitSpec(fractions=(numbers[0], numbers[1], numbers[2]))
    if len(parts) != 2:
        raise ConfigError(f"--split: expected fractions (0.7,0.15,0.15) or two UTC cutoffs, got {text!r}")
    try:
        first, second = (_ns(parse_utc(p)) for p in parts)
    except InputError as exc:
        raise ConfigError(f"--split: {exc}") from exc
    if first > second:
        raise ConfigError(f"--split: the val cutoff must not be after the test cutoff, got {text!r}")
    return SplitSpec(fractions=None, cutoffs=(first, second))


def cutoffs_for(spec: SplitSpec, range_start: int, range_end: int, interval_ns: int) -> Cutoffs:
    """Cutoffs on the bar grid of the common range [range_start, range_end] (ns)."""
    stop = range_end + interval_ns  # the range covers the last bar's whole interval
    if spec.fractions is not None:
        bars = (stop - range_start) // interval_ns
        f_train, f_val, f_test = spec.fractions
        c1 = range_start + int(math.floor(f_train * bars + 1e-9)) * interval_ns
        c2 = stop if f_test == 0 else range_start + int(math.floor((f_train + f_val) * bars + 1e-9)) * interval_ns
        return Cutoffs(c1, c2, val_wanted=f_val > 0, test_wanted=f_test > 0)
    assert spec.cutoffs is not None
    c1, c2 = spec.cutoffs
    if not range_start < c1 <= stop or not range_start < c2 <= stop:
        raise ConfigError(f"--split: cutoffs {spec.label} are outside the data range "
                          f"{_iso(range_start)} .. {_iso(stop)}")
    return Cutoffs(c1, c2, val_wanted=c2 > c1, test_wanted=c2 < stop)


def assign(t: np.ndarray, cut: Cutoffs, purge_ns: int, embargo_ns: int) -> np.ndarray:
    """int8 split code per sample (0 train, 1 val, 2 test, -1 purged) from its window end time t (ns)."""
    out = np.full(t.shape[0], PURGED, dtype=np.int8)
    out[t + purge_ns < cut.val_start] = 0
    out[(t >= cut.val_start + embargo_ns) & (t + purge_ns < cut.test_start)] = 1
    out[t >= cut.test_start + embargo_ns] = 2
    return out


def _ns(moment: dt.datetime) -> int:
    # Integer arithmetic: a float timestamp can land a microsecond off a bar boundary.
    return (moment - _EPOCH) // dt.timedelta(microseconds=1) * 1000
