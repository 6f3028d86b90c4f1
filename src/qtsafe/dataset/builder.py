"""From candles to (N, T, F) sequences: grid, features, labels, splits, normalisation, leakage checks.

:func:`build_arrays` is pure (candles in, arrays out, nothing written) so tests and the benchmark can
call it directly; :func:`qtsafe.dataset.run.run_build_dataset` adds loading, verdict and writing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from qtsafe.dataset.candles import NS_PER_SECOND, Candles, format_span
from qtsafe.dataset.candles import iso_ns as _iso
from qtsafe.dataset.features import DEFAULT_FEATURES, FeatureParams, compute_grid, resolve, warmup_of
from qtsafe.dataset.labels import check_rule, label_values
from qtsafe.dataset.sources import SourceSpec
from qtsafe.dataset.splits import SPLIT_NAMES, Cutoffs, SplitSpec, cutoffs_for
from qtsafe.dataset.validate import GridSeries, SymbolQuality, resolve_interval, to_grid
from qtsafe.dataset.windows import (
    REVIN_EPS,
    RunningMoments,
    SampleCounts,
    Selection,
    empty_prefaulted,
    gather_windows,
    normalize_windows,
    rows_covered,
    select_samples,
)
from qtsafe.errors import ConfigError, InputError, InsufficientDataError

NORMALIZE_MODES = ("train", "window")
CAUSALITY_SYMBOLS = 4  # symbols whose windows are re-derived from truncated data (two samples each)


@dataclasses.dataclass(frozen=True)
class DatasetRequest:
    """Everything ``build-dataset`` was asked for; validated on construction."""

    source: SourceSpec = SourceSpec("synthetic")
    symbols: tuple[str, ...] = ()  # empty: every symbol the source has (synthetic: its five defaults)
    days: int = 90
    interval_s: int | None = None  # None: inferred from the data (synthetic: 1h)
    lookback: int = 64
    horizon_s: int = 4 * 3600
    threshold: float = 0.01
    label_rule: str = "close"
    split: SplitSpec = SplitSpec()
    purge_s: int | None = None  # None: the horizon (never less)
    embargo_s: int = 0
    normalize: str = "train"
    features: tuple[str, ...] = DEFAULT_FEATURES
    allow_imbalance: bool = False
    mask_invalid: bool = False
    seed: int = 7

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ConfigError("--days must be at least 1")
        if not 2 <= self.lookback <= 4096:
            raise ConfigError(f"--lookback must be within 2..4096, got {self.lookback}")
        if self.horizon_s <= 0:
            raise ConfigError("--horizon must be positive")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"--threshold must be within (0, 1), got {self.threshold}")
        check_rule(self.label_rule)
        if self.normalize not in NORMALIZE_MODES:
            raise ConfigError(f"--normalize must be one of {', '.join(NORMALIZE_MODES)}, got {self.normalize!r}")
        if self.purge_s is not None and self.purge_s < self.horizon_s:
            raise ConfigError(f"--purge {format_span(self.purge_s)} is shorter than the horizon "
                              f"{format_span(self.horizon_s)}: labels would reach into the next split")
        if self.embargo_s < 0:
            raise ConfigError("--embargo must not be negative")

    @property
    def purge(self) -> int:
        return self.horizon_s if self.purge_s is None else self.purge_s


@dataclasses.dataclass(frozen=True)
class SymbolReport:
    """One symbol's coverage, defects and what became of its windows."""

    symbol: str
    status: str  # "ok", "too short" or "no samples"
    quality: SymbolQuality
    counts: SampleCounts
    split_samples: tuple[int, int, int]


@dataclasses.dataclass(frozen=True, eq=False)
class BuiltDataset:
    """The arrays of the dataset and everything the checks and the report need to know about them."""

    X: np.ndarray  # float32 (N, T, F)
    y: np.ndarray  # int8 (N,)
    timestamps: np.ndarray  # int64 ns (N,): time of each window's last bar t
    label_end: np.ndarray  # int64 ns (N,): time of bar t + h
    symbol_index: np.ndarray  # int16 (N,)
    split: np.ndarray  # int8 (N,): 0 train, 1 val, 2 test
    symbols: tuple[str, ...]
    grids: dict[str, GridSeries]
    reports: tuple[SymbolReport, ...]
    request: DatasetRequest
    interval_s: int
    horizon_bars: int
    feature_params: FeatureParams
    warmup: int
    range_start: int
    range_end: int
    cut: Cutoffs
    normalization: dict[str, Any]
    norm_fit_until: int | None  # ns of the latest bar used for train-only statistics
    causality: tuple[tuple[str, int, float], ...]  # (symbol, t ns, max |difference|)

    @property
    def counts(self) -> SampleCounts:
        total = SampleCounts()
        for report in self.reports:
            total = total + report.counts
        return total


def build_arrays(candles: Mapping[str, Candles], request: DatasetRequest) -> BuiltDataset:
    """Turn loaded candles into the dataset arrays; raises QtsafeError for every fail-closed case."""
    if not candles or all(len(c) == 0 for c in candles.values()):
        raise InsufficientDataError(f"no data: the source has no bars for {', '.join(candles) or 'any symbol'}")
    if len(candles) > np.iinfo(np.int16).max:
        raise ConfigError(f"{len(candles):,} symbols: symbol_index is int16, at most 32,767 symbols per dataset")
    interval_s = resolve_interval(candles, request.interval_s)
    interval_ns = interval_s * NS_PER_SECOND
    if request.horizon_s % interval_s:
        raise ConfigError(f"--horizon {format_span(request.horizon_s)} is not a whole number of "
                          f"{format_span(interval_s)} bars")
    if request.purge % interval_s or request.embargo_s % interval_s:
        raise ConfigError(f"--purge and --embargo must be whole numbers of {format_span(interval_s)} bars")
    horizon_bars = request.horizon_s // interval_s
    params = FeatureParams(interval_s=interval_s)
    features = resolve(request.features, params)
    warmup = warmup_of(features, params)
    lookback = request.lookback
    min_bars = warmup + lookback + horizon_bars

    # The common calendar range: --days back from the newest bar, but not before the oldest bar of any
    # symbol, so the split fractions divide time that has data. Cutoffs are shared by every symbol.
    range_end = max(int(c.ts.max()) for c in candles.values() if len(c))
    earliest = range_end - request.days * 86400 * NS_PER_SECOND + interval_ns
    oldest = min(int(c.ts[c.ts >= earliest].min()) for c in candles.values() if (c.ts >= earliest).any())
    range_start = earliest + (oldest - earliest) // interval_ns * interval_ns
    grids = {s: to_grid(c, interval_ns=interval_ns, range_start=range_start, range_end=range_end)
             for s, c in candles.items()}
    _refuse_invalid(grids, request.mask_invalid)
    cut = cutoffs_for(request.split, range_start, range_end, interval_ns)
    purge_ns, embargo_ns = request.purge * NS_PER_SECOND, request.embargo_s * NS_PER_SECOND

    long_enough = {s: g for s, g in grids.items() if g.quality.present_bars >= min_bars}
    if not long_enough:
        best = max(grids.values(), key=lambda g: g.quality.present_bars)
        raise InsufficientDataError(
            f"every symbol is too short: need at least {min_bars:,} {format_span(interval_s)} bars (warm-up "
            f"{warmup} + lookback {lookback} + horizon {horizon_bars}); most: {best.quality.present_bars:,} "
            f"({best.symbol})")

    # Pass 1: features, labels and the kept samples per symbol; train-only moments for normalisation.
    matrices: dict[str, np.ndarray] = {}
    selections: dict[str, Selection] = {}
    moments = RunningMoments(len(features))
    fit_until: int | None = None
    causality: list[tuple[str, int, float]] = []
    for symbol, grid in long_enough.items():
        matrix = compute_grid(features, grid, params, min_run=min_bars)
        labels = label_values(grid.close, grid.high, horizon_bars, request.threshold, request.label_rule)
        selection = select_samples(grid, matrix, labels, lookback=lookback, horizon_bars=horizon_bars, cut=cut,
                                   purge_ns=purge_ns, embargo_ns=embargo_ns)
        matrices[symbol], selections[symbol] = matrix, selection
        if selection.ends.shape[0] and len(causality) < 2 * CAUSALITY_SYMBOLS:
            causality.extend(_causality_probe(features, grid, params, matrix, selection.ends, lookback))
        train_ends = selection.ends[selection.split == 0]
        if request.normalize == "train" and train_ends.shape[0]:
            covered = rows_covered(len(grid), train_ends, lookback)
            moments.add(matrix[covered])
            last_row = int(np.flatnonzero(covered)[-1])
            fit_until = max(fit_until or 0, int(grid.times(np.array([last_row]))[0]))

    reports = tuple(_symbol_report(s, g, selections.get(s)) for s, g in grids.items())
    total = sum((r.counts for r in reports), SampleCounts())
    if total.kept == 0:
        raise InsufficientDataError(
            f"every window dropped: {total.dropped_gap:,} touch a gap, {total.dropped_warmup:,} fall in the "
            f"features' warm-up, {total.purged:,} purged at split cutoffs (of {total.candidates:,} candidates)")
    per_split = [sum(r.split_samples[k] for r in reports) for k in range(3)]
    wanted = (True, cut.val_wanted, cut.test_wanted)
    for k, name in enumerate(SPLIT_NAMES):
        if wanted[k] and per_split[k] == 0:
            raise InsufficientDataError(
                f"split {name} has no samples (val from {_iso(cut.val_start)}, test from {_iso(cut.test_start)}; "
                f"{total.kept:,} samples in the others): use more --days or another --split")

    normalization = _normalization(request, [f.name for f in features], moments, fit_until)

    # Pass 2: one allocation for X, then each symbol's windows gathered straight into it.
    symbols = tuple(grids)
    n, width = total.kept, len(features)
    x = empty_prefaulted((n, lookback, width), np.float32)
    y = np.empty(n, dtype=np.int8)
    ts = np.empty(n, dtype=np.int64)
    split = np.empty(n, dtype=np.int8)
    symbol_index = np.empty(n, dtype=np.int16)
    offset = 0
    for symbol, selection in selections.items():
        k = selection.ends.shape[0]
        if k == 0:
            continue
        matrix = matrices.pop(symbol)
        if request.normalize == "train":
            matrix = (matrix - normalization["mean"]) / normalization["std"]
        gather_windows(x[offset:offset + k], np.ascontiguousarray(matrix, dtype=np.float32), selection.ends, lookback)
        y[offset:offset + k] = selection.y
        ts[offset:offset + k] = grids[symbol].times(selection.ends)
        split[offset:offset + k] = selection.split
        symbol_index[offset:offset + k] = symbols.index(symbol)
        offset += k
    if request.normalize == "window":
        normalize_windows(x)
    return BuiltDataset(
        X=x, y=y, timestamps=ts, label_end=ts + horizon_bars * interval_ns, symbol_index=symbol_index, split=split,
        symbols=symbols, grids=grids, reports=reports, request=request, interval_s=interval_s,
        horizon_bars=horizon_bars, feature_params=params, warmup=warmup, range_start=range_start,
        range_end=range_end, cut=cut, normalization=normalization, norm_fit_until=fit_until,
        causality=tuple(causality),
    )


def _refuse_invalid(grids: Mapping[str, GridSeries], mask_invalid: bool) -> None:
    """Corrupt prices fail the build unless the operator chose to mask them like gaps."""
    bad = [g.quality for g in grids.values() if g.quality.invalid_bars]
    if not bad or mask_invalid:
        return
    q = bad[0]
    kinds = [(q.nan_prices, "NaN prices"), (q.non_positive, "non-positive prices"),
             (q.high_below_low, "high < low"), (q.outside_high_low, "open/close outside high-low"),
             (q.bad_volume, "NaN or negative volume")]
    found = ", ".join(f"{count:,} with {what}" for count, what in kinds if count)
    more = f"; {len(bad) - 1} more symbol(s) affected" if len(bad) > 1 else ""
    raise InputError(f"{q.symbol}: {q.invalid_bars:,} corrupt bar(s): {found} (first at {_iso(q.first_invalid)})"
                     f"{more}; fix the source, leave the symbol out with --symbols, or pass --mask-invalid "
                     "to drop such bars like gaps")


def _causality_probe(features: Any, grid: GridSeries, params: FeatureParams, matrix: np.ndarray,
                     ends: np.ndarray, lookback: int) -> list[tuple[str, int, float]]:
    """Recompute two windows from the bars up to their last bar only; any difference is look-ahead.

    The first and the median sample: their prefixes are short, so the check costs a fraction of the build.
    """
    out = []
    for t in sorted({int(ends[0]), int(ends[ends.shape[0] // 2])}):
        known = compute_grid(features, grid.truncated(t + 1), params)
        rows = slice(t - lookback + 1, t + 1)
        diff = np.abs(known[rows] - matrix[rows])
        worst = float(np.max(np.where(np.isnan(diff), np.inf, diff)))
        out.append((grid.symbol, int(grid.times(np.array([t]))[0]), worst))
    return out


def _symbol_report(symbol: str, grid: GridSeries, selection: Selection | None) -> SymbolReport:
    if selection is None:
        return SymbolReport(symbol, "too short", grid.quality, SampleCounts(), (0, 0, 0))
    per_split = tuple(int((selection.split == k).sum()) for k in range(3))
    status = "ok" if selection.ends.shape[0] else "no samples"
    return SymbolReport(symbol, status, grid.quality, selection.counts, (per_split[0], per_split[1], per_split[2]))


def _normalization(request: DatasetRequest, names: list[str], moments: RunningMoments,
                   fit_until: int | None) -> dict[str, Any]:
    if request.normalize == "window":
        return {"mode": "window", "eps": REVIN_EPS,
                "rule": "x = (x - mean_w) / sqrt(var_w + eps) per window and feature (RevIN-style)"}
    std = moments.std
    flat = [name for name, s in zip(names, std, strict=True) if not s > 0]
    if flat:
        raise InsufficientDataError(f"feature(s) {', '.join(flat)} are constant over the train rows; "
                                    "cannot normalise (try --normalize window)")
    return {"mode": "train", "features": names, "mean": moments.mean, "std": std, "fit_rows": moments.count,
            "fit_until": _iso(fit_until) if fit_until is not None else None,
            "rule": "x = (x - mean) / std, mean and std (ddof=1) over the rows of train windows only"}
