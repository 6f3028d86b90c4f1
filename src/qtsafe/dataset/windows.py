"""Vectorised sample selection and window copying: no Python loop per window.

Which windows survive is decided with prefix sums over a symbol's grid (one pass, O(bars)); the
windows are then gathered with ``np.take`` straight into the preallocated output, a few thousand at a
time, so the peak memory is the output plus one small chunk of indices.
"""

from __future__ import annotations

import dataclasses
import mmap

import numpy as np

from qtsafe.dataset.splits import PURGED, Cutoffs, assign
from qtsafe.dataset.validate import GridSeries

PREFAULT_MIN_BYTES = 64 * 2**20  # below this, page faults cost milliseconds: plain np.empty
CHUNK = 4096  # windows per np.take call: index array of CHUNK x lookback int64 (2 MB at lookback 64)
# Added to the variance so a flat window does not divide by zero. RevIN's usual 1e-5 assumes unit-scale
# inputs: next to a variance of hourly log returns (~1e-5) it would shrink that feature by a third.
REVIN_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class SampleCounts:
    """What happened to every position where a window and its label fit in the symbol's grid."""

    candidates: int = 0
    dropped_gap: int = 0  # the window or its label touches a missing or masked bar
    dropped_warmup: int = 0  # no gap, but a row is still in the features' warm-up after a gap or the start
    purged: int = 0  # valid, but inside a purge or embargo zone around a split cutoff
    kept: int = 0

    def __add__(self, other: SampleCounts) -> SampleCounts:
        return SampleCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other),
                                                    strict=True)))


@dataclasses.dataclass(frozen=True, eq=False)
class Selection:
    ends: np.ndarray  # int64 grid positions t of the kept samples, ascending
    y: np.ndarray  # int8
    split: np.ndarray  # int8
    counts: SampleCounts


def empty_prefaulted(shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
    """Like ``np.empty``, but every page is faulted in by one ``mmap(MAP_POPULATE)`` call (Linux).

    Writing into fresh memory otherwise traps once per 4 KiB page. On a VM that backs guest memory
    lazily that dominates the whole build: on the reference machine a cold 2.5 GB array took 6-7 s to
    fill page by page and 1.0-1.6 s when populated up front (docs/performance.md).
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is None or nbytes < PREFAULT_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    try:
        buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except (OSError, ValueError):  # e.g. a memory limit refuses the mapping: let numpy try its way
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)  # the array keeps the mapping alive


def select_samples(grid: GridSeries, features: np.ndarray, labels: np.ndarray, *, lookback: int,
                   horizon_bars: int, cut: Cutoffs, purge_ns: int, embargo_ns: int) -> Selection:
    """Keep the windows ending at t whose bars t-T+1 .. t+h are all present and whose features are warm."""
    m = len(grid)
    t = np.arange(lookback - 1, m - horizon_bars, dtype=np.int64)
    if t.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Selection(empty, empty.astype(np.int8), empty.astype(np.int8), SampleCounts())
    missing = np.concatenate(([0], np.cumsum(~grid.present)))
    touches_gap = missing[t + horizon_bars + 1] - missing[t - lookback + 1] > 0
    not_ready = np.concatenate(([0], np.cumsum(~np.isfinite(features).all(axis=1))))
    cold = (not_ready[t + 1] - not_ready[t - lookback + 1] > 0) | np.isnan(labels[t])
    valid = ~touches_gap & ~cold
    split = assign(grid.times(t), cut, purge_ns, embargo_ns)
    keep = valid & (split != PURGED)
    counts = SampleCounts(
        candidates=int(t.shape[0]), dropped_gap=int(touches_gap.sum()), dropped_warmup=int((~touches_gap & cold).sum()),
        purged=int((valid & (split == PURGED)).sum()), kept=int(keep.sum()),
    )
    return Selection(t[keep], labels[t[keep]].astype(np.int8), split[keep], counts)


def rows_covered(length: int, ends: np.ndarray, lookback: int) -> np.ndarray:
    """Boolean per grid row: does any window ending at ``ends`` include it?"""
    starts = np.bincount(ends - lookback + 1, minlength=length + 1)
    stops = np.bincount(ends + 1, minlength=length + 1)
    return np.cumsum(starts - stops)[:length] > 0


def gather_windows(out: np.ndarray, matrix: np.ndarray, ends: np.ndarray, lookback: int) -> None:
    """out[i] = matrix[ends[i]-T+1 .. ends[i]] for every i, written in place, CHUNK windows per call."""
    offsets = np.arange(-lookback + 1, 1, dtype=np.int64)
    for start in range(0, ends.shape[0], CHUNK):
        block = ends[start:start + CHUNK]
        # mode="clip" lets np.take write straight into `out` (mode="raise" buffers a copy); the
        # indices are in range by construction, select_samples only yields t >= lookback - 1.
        np.take(matrix, block[:, None] + offsets, axis=0, out=out[start:start + block.shape[0]], mode="clip")


def normalize_windows(x: np.ndarray) -> None:
    """RevIN-style, in place: each window and feature scaled by that window's own mean and std."""
    for start in range(0, x.shape[0], CHUNK):
        block = x[start:start + CHUNK]
        mean = block.mean(axis=1, keepdims=True, dtype=np.float64)
        var = block.var(axis=1, keepdims=True, dtype=np.float64)
        block[...] = (block - mean) / np.sqrt(var + REVIN_EPS)


class RunningMoments:
    """Per-feature count, mean and sum of squared deviations, merged block by block (Chan et al.)."""

    def __init__(self, width: int) -> None:
        self.count = 0
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)

    def add(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        if n == 0:
            return
        mean = rows.mean(axis=0)
        m2 = ((rows - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count - 1, 1))


def all_finite(x: np.ndarray) -> bool:
    """np.isfinite(x).all() without a boolean copy of the whole array."""
    return all(bool(np.isfinite(x[s:s + CHUNK]).all()) for s in range(0, x.shape[0], CHUNK))
