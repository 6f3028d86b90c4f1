"""build-dataset: vectorised windows vs a straightforward per-window loop, on the same candles.

    python bench/bench_dataset.py                      # 100 symbols x 90 days of 5m bars (~2.6 M bars)
    python bench/bench_dataset.py --symbols 10 --days 30

Each variant runs in its own process (so peak RSS is its own): the synthetic candles are generated
first (not timed), then the build is timed from candles to the finished, normalised X. Both variants
share the grid, feature and label code; they differ in how windows are chosen and copied. The script
checks that both produce the same bytes, then prints the times, the ratio loop / vectorised, and peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qtsafe.dataset import builder
from qtsafe.dataset.builder import DatasetRequest, build_arrays
from qtsafe.dataset.candles import NS_PER_SECOND
from qtsafe.dataset.features import FeatureParams, compute_grid, resolve, warmup_of
from qtsafe.dataset.labels import label_values
from qtsafe.dataset.splits import cutoffs_for
from qtsafe.dataset.synthetic import generate
from qtsafe.dataset.validate import resolve_interval, to_grid
from qtsafe.dataset.windows import RunningMoments

INTERVAL_S = 300


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class Stopwatch:
    """Seconds spent inside named stages, summed over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

        return timed


def loop_build(candles: dict[str, Any], request: DatasetRequest,
               watch: Stopwatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What one writes without thinking about vectorising: one Python iteration per candidate window."""
    interval_s = resolve_interval(candles, request.interval_s)
    iv = interval_s * NS_PER_SECOND
    h = request.horizon_s // interval_s
    lookback = request.lookback
    params = FeatureParams(interval_s=interval_s)
    features = resolve(request.features, params)
    min_bars = warmup_of(features, params) + lookback + h
    end = max(int(c.ts.max()) for c in candles.values())
    earliest = end - request.days * 86400 * NS_PER_SECOND + iv
    oldest = min(int(c.ts[c.ts >= earliest].min()) for c in candles.values())
    start = earliest + (oldest - earliest) // iv * iv
    cut = cutoffs_for(request.split, start, end, iv)
    purge, embargo = request.purge * NS_PER_SECOND, request.embargo_s * NS_PER_SECOND
    features_of = watch.wrap("features", compute_grid)

    kept: list[tuple[str, int, int, int]] = []  # (symbol, t, label, split)
    matrices = {}
    moments = RunningMoments(len(features))  # the same statistics code, so the outputs match to the bit
    for symbol, c in candles.items():
        grid = to_grid(c, interval_ns=iv, range_start=start, range_end=end)
        if grid.quality.present_bars < min_bars:
            continue
        matrix = features_of(features, grid, params, min_run=min_bars)
        labels = label_values(grid.close, grid.high, h, request.threshold, request.label_rule)
        covered = np.zeros(len(grid), dtype=bool)
        started = time.perf_counter()
        for t in range(lookback - 1, len(grid) - h):
            if not grid.present[t - lookback + 1:t + h + 1].all():
                continue
            if not np.isfinite(matrix[t - lookback + 1:t + 1]).all() or np.isnan(labels[t]):
                continue
            when = grid.start_ns + t * iv
            if when + purge < cut.val_start:
                split = 0
                covered[t - lookback + 1:t + 1] = True
            elif when >= cut.val_start + embargo and when + purge < cut.test_start:
                split = 1
            elif when >= cut.test_start + embargo:
                split = 2
            else:
                continue
            kept.append((symbol, t, int(labels[t]), split))
        watch.seconds["windows"] = watch.seconds.get("windows", 0.0) + time.perf_counter() - started
        matrices[symbol] = matrix
        moments.add(matrix[covered])
    mean, std = moments.mean, moments.std
    scaled = {s: ((m - mean) / std).astype(np.float32) for s, m in matrices.items()}
    started = time.perf_counter()
    windows = [scaled[symbol][t - lookback + 1:t + 1] for symbol, t, _, _ in kept]
    x = np.stack(windows)
    y = np.array([label for _, _, label, _ in kept], dtype=np.int8)
    split_codes = np.array([split for _, _, _, split in kept], dtype=np.int8)
    watch.seconds["windows"] += time.perf_counter() - started
    return x, y, split_codes


def build_once(mode: str, candles: dict[str, Any], request: DatasetRequest) -> dict[str, Any]:
    watch = Stopwatch()
    started = time.perf_counter()
    if mode == "vectorised":
        stages = {"compute_grid": "features", "select_samples": "select", "empty_prefaulted": "alloc",
                  "gather_windows": "copy"}
        originals = {name: getattr(builder, name) for name in stages}
        for name, stage in stages.items():
            setattr(builder, name, watch.wrap(stage, originals[name]))
        try:
            built = build_arrays(candles, request)
        finally:
            for name, fn in originals.items():
                setattr(builder, name, fn)
        x, y, split = built.X, built.y, built.split
        # Like for like with the loop, whose np.stack gets and fills its own output memory.
        watch.seconds["windows"] = watch.seconds["select"] + watch.seconds["alloc"] + watch.seconds["copy"]
    else:
        x, y, split = loop_build(candles, request, watch)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256(x.data).hexdigest()[:16] + hashlib.sha256(y.data).hexdigest()[:4] \
        + hashlib.sha256(split.data).hexdigest()[:4]  # .data, not .tobytes(): no copy of X in the peak RSS
    return {"seconds": seconds, "stages": watch.seconds, "samples": int(x.shape[0]), "x_mb": x.nbytes / 2**20,
            "digest": digest}


def child(mode: str, symbols: int, days: int) -> dict[str, Any]:
    names = [f"SYM{i:03d}" for i in range(symbols)]
    candles = generate(names, days=days, interval_s=INTERVAL_S, seed=7)
    request = DatasetRequest(days=days, interval_s=INTERVAL_S)
    rss_before = _rss_mb()
    # Twice: the first run's output lands in memory the VM has never touched (slow on this machine, see
    # docs/performance.md); the second reuses the memory the first one freed a moment earlier.
    cold = build_once(mode, candles, request)
    warm = build_once(mode, candles, request)
    assert cold["digest"] == warm["digest"]
    return {"mode": mode, "symbols": symbols, "days": days, "bars": sum(len(c) for c in candles.values()),
            "samples": warm["samples"], "cold_seconds": cold["seconds"], "seconds": warm["seconds"],
            "stages": warm["stages"], "x_mb": warm["x_mb"], "rss_before_mb": rss_before, "peak_rss_mb": _peak_mb(),
            "digest": warm["digest"]}


def run(mode: str, symbols: int, days: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--symbols", str(symbols), "--days", str(days)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--loop-symbols", type=int, default=None,
                        help="time the loop on this many symbols only and scale by bars (default: all)")
    parser.add_argument("--child", choices=["vectorised", "loop"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.symbols, args.days)))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    vec = run("vectorised", args.symbols, args.days)
    loop_symbols = args.loop_symbols or args.symbols
    loop = run("loop", loop_symbols, args.days)
    rows = [vec, loop]
    if loop_symbols == args.symbols:
        same = vec["digest"] == loop["digest"]
        print(f"identical output (X, y, split): {same}")
        if not same:
            raise SystemExit("\nthe two variants disagree; the comparison is void")
    print(f"{'variant':<11} {'symbols':>7} {'bars':>10} {'samples':>10} {'cold s':>7} {'warm s':>7} "
          f"{'features':>8} {'windows':>8} {'X MB':>6} {'peak RSS':>9}")
    for r in rows:
        print(f"{r['mode']:<11} {r['symbols']:>7} {r['bars']:>10,} {r['samples']:>10,} {r['cold_seconds']:>7.2f} "
              f"{r['seconds']:>7.2f} {r['stages']['features']:>8.2f} {r['stages']['windows']:>8.2f} "
              f"{r['x_mb']:>6.0f} {r['peak_rss_mb']:>6.0f} MB")
    scale = vec["bars"] / loop["bars"]
    note = "" if loop_symbols == args.symbols else f"  (loop scaled from {loop_symbols} symbols by bar count)"
    print(f"ratio loop / vectorised, whole build: {loop['seconds'] * scale / vec['seconds']:.1f}x warm, "
          f"{loop['cold_seconds'] * scale / vec['cold_seconds']:.1f}x cold{note}")
    print(f"ratio loop / vectorised, window selection + output memory + copy: "
          f"{loop['stages']['windows'] * scale / vec['stages']['windows']:.1f}x{note}")
    st = vec["stages"]
    print(f"vectorised windows {st['windows']:.2f} s = select {st['select']:.2f} + output memory {st['alloc']:.2f} "
          f"({vec['x_mb'] / 1024 / st['alloc']:.1f} GiB/s) + copy {st['copy']:.2f}; without the output memory "
          f"the ratio is {loop['stages']['windows'] * scale / (st['select'] + st['copy']):.0f}x")
    print(f"vectorised peak RSS {vec['peak_rss_mb']:.0f} MB = X {vec['x_mb']:.0f} MB + "
          f"{vec['peak_rss_mb'] - vec['x_mb']:.0f} MB (of which {vec['rss_before_mb']:.0f} MB before the build: "
          f"interpreter, libraries and the input candles)")


if __name__ == "__main__":
    main()
