#!/usr/bin/env python
"""Monitor tick benchmark: the cost of one check with 1,000 new entries (read, fold, judge, and the atomic save
of the watch state and the check's timeline row), at 100k and 1M entries of history, beside a full re-read of the
stream (what a check would cost if it recomputed from the start).

Runs against a real redis-server on a free loopback port. Usage: ``python bench/bench_monitor.py [--ticks 20]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gate import STREAM, start_redis  # noqa: E402

from qtsafe.config import load_settings  # noqa: E402
from qtsafe.evidence import gather, gc_paused  # noqa: E402
from qtsafe.fsio import append_jsonl, atomic_write_json  # noqa: E402
from qtsafe.monitor import Watch  # noqa: E402
from qtsafe.simulate import generate  # noqa: E402
from qtsafe.telemetry import RedisStreamSource  # noqa: E402
from qtsafe.telemetry.window import window_between  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# 1,000 new entries per 30-s check, as the budget states it (60x today's producer): the outcome horizon (5 min)
# then holds 10,000 pending events, as a watch at that rate would.
SPACING_MS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    distinct = [e.fields for e in generate("healthy", 20_000, seed=3)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        client = redis.Redis.from_url(url)
        settings = load_settings(overrides={"base_dir": tmp}, env={})
        try:
            written = 0
            base_ms = int(time.time() * 1000) - 100_000_000
            for size in sizes:
                pipe = client.pipeline(transaction=False)
                while written < size:
                    pipe.xadd(STREAM, distinct[written % len(distinct)], id=f"{base_ms + written * SPACING_MS}-0")
                    written += 1
                    if written % 5000 == 0:
                        pipe.execute()
                pipe.execute()
                source = RedisStreamSource(redis.Redis.from_url(url), STREAM)
                # A watch that has already caught up with the whole history (as a running monitor has).
                start = dt.datetime.fromtimestamp(base_ms / 1000, tz=dt.UTC)
                watch = Watch(settings, "bench", "patchtst", start)
                watch.fold(watch.read_new(source))
                # A watch 6 hours in has 720 checks of timeline (kept in memory for the final report).
                watch.timeline = [{"index": i, "at": "2026-01-10T06:00:00Z", "new": 1000, "events": i * 1000,
                                   "state": "ok", "models": {m: {"n": 200, "std": 0.1, "spread": 0.3}
                                                             for m in ("xgb", "lgbm", "nhits", "patchtst")}}
                                  for i in range(720)]
                tick_ms = []
                for _ in range(args.ticks):
                    pipe = client.pipeline(transaction=False)
                    for _ in range(1000):
                        pipe.xadd(STREAM, distinct[written % len(distinct)], id=f"{base_ms + written * SPACING_MS}-0")
                        written += 1
                    pipe.execute()
                    now = dt.datetime.fromtimestamp((base_ms + written * SPACING_MS) / 1000, tz=dt.UTC)
                    t0 = time.perf_counter()
                    # What run_monitor does every check besides the tick, with the collector paused as it does:
                    # append the timeline row, save the state.
                    with gc_paused():
                        tick = watch.tick(source, now)
                        append_jsonl(Path(tmp) / "timeline.jsonl", {"canary_id": "bench", "row": watch.timeline[-1]})
                        atomic_write_json(Path(tmp) / "state.json", watch.to_state(), compact=True)
                    tick_ms.append((time.perf_counter() - t0) * 1000)
                    # The collection the check deferred, outside the check (the loop's sleep), not timed.
                    gc.collect(1)
                    assert tick.new_events == 1000, tick.new_events
                t0 = time.perf_counter()
                full = gather(source, window_between(start))
                reread_ms = (time.perf_counter() - t0) * 1000
                row = {"history": written, "tick_median_ms": round(statistics.median(tick_ms), 1),
                       "tick_max_ms": round(max(tick_ms), 1), "full_reread_ms": round(reread_ms, 0),
                       "full_reread_entries": full.telemetry.read}
                results.append(row)
                print(f"history {written:>9,}: tick with 1,000 new entries median {row['tick_median_ms']} ms "
                      f"(max {row['tick_max_ms']} ms); a full re-read takes {row['full_reread_ms']:.0f} ms", flush=True)
        finally:
            proc.terminate()
            proc.wait()
    flat = results[-1]["tick_median_ms"] / results[0]["tick_median_ms"]
    print(json.dumps({"rows": results, "tick_ratio_largest_to_smallest": round(flat, 2)}, indent=2))
    print(f"tick cost at {results[-1]['history']:,} vs {results[0]['history']:,} entries of history: {flat:.2f}x "
          "(flat = ~1.0x); goal: under 50 ms")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_monitor.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
