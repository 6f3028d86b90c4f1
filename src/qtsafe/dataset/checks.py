"""Leakage checks, run on the finished arrays rather than trusted from the code that built them.

Each check re-derives its fact from the output (timestamps, label ends, splits, the grid's presence
mask), so a bug in selection or splitting shows up here as a failed check and a FAIL verdict.
"""

from __future__ import annotations

import numpy as np

from qtsafe.dataset.builder import BuiltDataset
from qtsafe.dataset.candles import NS_PER_SECOND, format_span
from qtsafe.dataset.candles import iso_ns as _iso
from qtsafe.dataset.windows import all_finite
from qtsafe.findings import FAIL, OK, Finding

CAUSALITY_TOLERANCE = 1e-9


def _check(name: str, ok: bool, detail: str) -> Finding:
    """A leakage check as a finding: OK when it holds, FAIL when it does not."""
    return Finding(name, OK if ok else FAIL, detail, scope="dataset")


def check_dict(finding: Finding) -> dict[str, object]:
    """A leakage check as the dataset's JSON has always shown it (scripts read these keys): name, passed, detail."""
    return {"name": finding.check, "passed": finding.passed, "detail": finding.message}


def leakage_checks(built: BuiltDataset) -> tuple[Finding, ...]:
    return (
        _purge(built),
        _chronology(built),
        _no_gaps(built),
        _normalisation(built),
        _causality(built),
        _finite(built),
        _unique(built),
    )


def _purge(b: BuiltDataset) -> Finding:
    horizon_ns = b.horizon_bars * b.interval_s * NS_PER_SECOND
    purge_ok = b.request.purge * NS_PER_SECOND >= horizon_ns
    train_end = _max(b.label_end[b.split == 0])
    val_end = _max(b.label_end[b.split == 1])
    ok = purge_ok and (train_end is None or train_end < b.cut.val_start) and \
        (val_end is None or val_end < b.cut.test_start)
    return _check("labels end before the next split's cutoff", ok,
                 f"purge {format_span(b.request.purge)} >= horizon {format_span(b.request.horizon_s)}; "
                 f"latest train label end {_iso(train_end)} < val cutoff {_iso(b.cut.val_start)}; "
                 f"latest val label end {_iso(val_end)} < test cutoff {_iso(b.cut.test_start)}")


def _chronology(b: BuiltDataset) -> Finding:
    embargo = b.request.embargo_s * NS_PER_SECOND
    parts = []
    ok = True
    for earlier, later, cutoff in ((0, 1, b.cut.val_start), (1, 2, b.cut.test_start), (0, 2, b.cut.test_start)):
        last_label = _max(b.label_end[b.split == earlier])
        first_start = _min(b.timestamps[b.split == later])
        if first_start is not None:
            ok &= first_start >= cutoff + embargo
        if last_label is not None and first_start is not None:
            ok &= last_label < first_start
            if later == earlier + 1:
                parts.append(f"{_NAMES[earlier]} labels end by {_iso(last_label)} < first {_NAMES[later]} "
                             f"window end {_iso(first_start)}")
    return _check("splits are chronological and do not overlap", ok,
                 "; ".join(parts) + f"; embargo {format_span(b.request.embargo_s)}")


def _no_gaps(b: BuiltDataset) -> Finding:
    """Every bar from the window's first to the label's last must be present on the grid."""
    lookback, h = b.request.lookback, b.horizon_bars
    span_ok = bool(np.all(b.label_end - b.timestamps == h * b.interval_s * NS_PER_SECOND))
    bad = 0
    for index, symbol in enumerate(b.symbols):
        rows = b.symbol_index == index
        if not rows.any():
            continue
        grid = b.grids[symbol]
        t = (b.timestamps[rows] - grid.start_ns) // grid.interval_ns
        present = np.concatenate(([0], np.cumsum(grid.present)))
        lo, hi = t - lookback + 1, t + h + 1
        inside = (lo >= 0) & (hi <= len(grid))
        bad += int((~inside).sum())
        bad += int((present[hi[inside]] - present[lo[inside]] != lookback + h).sum())
    return _check("no window or label touches a missing bar", span_ok and bad == 0,
                 f"{len(b.y):,} samples re-checked: every bar of the {lookback} window bars and {h} label bars "
                 f"present" if bad == 0 else f"{bad:,} samples span a missing bar")


def _normalisation(b: BuiltDataset) -> Finding:
    if b.normalization["mode"] == "window":
        return _check("normalisation uses no data outside its window", True,
                     "per-window (RevIN-style): each window is scaled by its own mean and std")
    last_train = _max(b.timestamps[b.split == 0])
    fit = b.norm_fit_until
    ok = fit is not None and last_train is not None and fit <= last_train < b.cut.val_start
    return _check("normalisation statistics fitted on train rows only", ok,
                 f"{b.normalization['fit_rows']:,} rows, the latest at {_iso(fit)} <= last train window end "
                 f"{_iso(last_train)} < val cutoff {_iso(b.cut.val_start)}")


def _causality(b: BuiltDataset) -> Finding:
    worst = max((d for _, _, d in b.causality), default=float("inf"))
    ok = bool(b.causality) and worst <= CAUSALITY_TOLERANCE
    return _check("features use no bar after t (recomputed from truncated data)", ok,
                 f"{len(b.causality)} windows over {len({s for s, _, _ in b.causality})} symbols recomputed from "
                 f"the bars up to their last bar only; largest difference {worst:.3g}")


def _finite(b: BuiltDataset) -> Finding:
    ok = all_finite(b.X)
    return _check("every value in X is finite", ok, f"X {b.X.shape} float32" + ("" if ok else ": NaN or Inf found"))


def _unique(b: BuiltDataset) -> Finding:
    order = np.lexsort((b.timestamps, b.symbol_index))
    same = (np.diff(b.timestamps[order]) == 0) & (np.diff(b.symbol_index[order]) == 0)
    duplicates = int(same.sum())
    return _check("each (symbol, time) appears once", duplicates == 0, f"{duplicates} duplicate samples")


_NAMES = ("train", "val", "test")


def _max(values: np.ndarray) -> int | None:
    return int(values.max()) if values.shape[0] else None


def _min(values: np.ndarray) -> int | None:
    return int(values.min()) if values.shape[0] else None
