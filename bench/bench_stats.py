#!/usr/bin/env python
"""Cost of the verdict statistics (checks.consensus / outcomes / paired / dependence) on synthetic columns.

Two shapes: a gate over 1,000,000 events and 5 models (everything over the whole window and the recent
200 votes), and a monitor check that folds 1,000 new events and judges every model's 200-vote window
with evidence (n_eff, Wilson/spread bounds at a Bonferroni alpha). No Redis: this is the statistics
alone, on top of what bench_gate.py / bench_monitor.py measure. Usage: ``python bench/bench_stats.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from qtsafe.checks.consensus import VoteMatrix, fleiss_kappa, leave_one_out, relative_evidence
from qtsafe.checks.dependence import AlphaSchedule, proportion_evidence, spread_beyond_limit, std_beyond_limit
from qtsafe.checks.outcomes import hits, realised_direction, score_model
from qtsafe.checks.paired import non_inferiority, paired_comparison

MODELS = ("lgbm", "nhits", "patchtst", "tft", "xgb")


def synthetic(events: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    side = (np.cumsum(rng.random(events) < 1 / 60) % 2).astype(np.int8)  # regimes of ~60 events
    draw = rng.random((events, len(MODELS)))
    actions = np.where(draw < 0.48, side[:, None], np.where(draw < 0.97, 2, 1 - side[:, None])).astype(np.int8)
    actions[rng.random((events, len(MODELS))) < 0.02] = -1  # a few absent votes
    conf = rng.uniform(0.4, 0.97, (events, len(MODELS)))
    ms = 1_700_000_000_000 + np.arange(events, dtype=np.int64) * 200
    symbols = rng.integers(0, 6, events)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, events)))
    return actions, conf, ms, symbols, price


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def gate(actions: np.ndarray, conf: np.ndarray, ms: np.ndarray, symbols: np.ndarray, price: np.ndarray) -> dict:
    steps: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        out = fn()
        steps[name] = (time.perf_counter() - start) * 1000
        return out

    matrix = VoteMatrix(MODELS, actions, np.ones(len(MODELS), bool))
    series = step("leave_one_out", lambda: leave_one_out(matrix))
    whole = step("figures whole (5 models)", lambda: {n: series.figures(n) for n in MODELS})  # type: ignore[attr-defined]
    step("figures recent 200 (5 models)",
         lambda: {n: series.figures(n, series.recent_start(n, 200)) for n in MODELS})  # type: ignore[attr-defined]
    step("relative rule", lambda: relative_evidence(whole, whole))  # type: ignore[arg-type]
    votes = np.stack([(actions == k).sum(axis=1) for k in range(3)], axis=1).astype(np.int16)
    step("fleiss_kappa", lambda: fleiss_kappa(votes))
    realised = step("realised_direction (H = 5 min)", lambda: realised_direction(ms, symbols, price, 300_000))
    # Per-model columns as the reader gives them: contiguous, valid votes only.
    columns = []
    for j in range(len(MODELS)):
        idx = np.flatnonzero(actions[:, j] >= 0)
        columns.append((idx, actions[idx, j], conf[idx, j]))
    step("score_model (5 models)", lambda: [score_model(n, *columns[j], realised)  # type: ignore[arg-type]
                                            for j, n in enumerate(MODELS)])
    step("paired + non-inferiority", lambda: non_inferiority(paired_comparison(
        hits(actions[:, 2], realised.status), hits(series.consensus[2], realised.status))))  # type: ignore[attr-defined]
    steps["total"] = sum(steps.values())
    return steps


def monitor_check(actions: np.ndarray, conf: np.ndarray, schedule: AlphaSchedule, look: int) -> None:
    """What a check adds: consensus of the new events, then evidence over each model's last 200 votes."""
    new = actions[-1000:]
    series = leave_one_out(VoteMatrix(MODELS, new, np.ones(len(MODELS), bool)))
    alpha = schedule.for_look(look)
    window = {n: series.figures(n, series.recent_start(n, 200)) for n in MODELS}
    relative_evidence(window, None)
    for j in range(len(MODELS)):
        recent = actions[-200:, j]
        for code in range(3):
            proportion_evidence(recent == code, 0.70, "max", alpha)
        std_beyond_limit(conf[-200:, j], 0.05, "min", alpha)
        spread_beyond_limit(conf[-200:, j], 0.12, "min", alpha)
    hard = (new[-200:] == 0).any(axis=1) & (new[-200:] == 1).any(axis=1)
    proportion_evidence(hard, 0.20, "max", alpha)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = synthetic(args.events)
    runs = [gate(*data) for _ in range(args.runs)]
    print(f"gate statistics over {args.events:,} events x {len(MODELS)} models (median of {args.runs} runs, ms):")
    for name in runs[0]:
        print(f"  {name:34s} {statistics.median(r[name] for r in runs):9.1f}")
    schedule = AlphaSchedule(alpha=0.05, looks=720)
    small = synthetic(20_000, seed=2)
    median, worst = timed(lambda: monitor_check(small[0], small[1], schedule, 360), 50)
    print(f"monitor check statistics (1,000 new events, 5 models, 200-vote windows): "
          f"median {median:.1f} ms, max {worst:.1f} ms over 50 checks")


if __name__ == "__main__":
    main()
