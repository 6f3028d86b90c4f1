#!/usr/bin/env python
"""Accuracy benchmark: how often the monitor's rules roll back a healthy canary, and how late they catch a broken one.

Each run is a simulated 6-hour watch (10,800 producer-shape entries, one every 2 s, four models with patchtst the
canary) written to its own stream in a real ``redis-server`` and replayed through the monitor's rules
(``qtsafe.monitor.run_replay``, what ``qtsafe monitor replay`` does): one check every 30 s of stream time, 720
checks. Healthy runs are replayed in both markets (``plain``: no market-wide moves; ``regimes``: direction and
volatility every model sees at once). Broken runs are healthy for 3 hours, then patchtst (for copies and
shared-bias: the voting fleet) breaks in each way the simulator knows (in the harder ``regimes`` market).

Prints, per healthy market, the false-rollback rate (runs with any firing) with its Wilson 95 % interval, and per
break the share caught, false alarms before the break, and the delay from the moment the canary's 200-vote window is
full of broken votes to the first firing, in checks. Results go to ``bench/results/accuracy.json``.

Usage: ``python bench/bench_accuracy.py [--healthy 200] [--broken 10] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from bench_gate import start_redis

HOURS, SPACING_MS, CHECK_S = 6, 2000, 30
EVENTS = HOURS * 3600 * 1000 // SPACING_MS
END = dt.datetime(2026, 1, 10, 6, 0, tzinfo=dt.UTC)
BREAKS = ("collapsed", "constant", "nan-burst", "narrow", "hold-dead-zone", "majority-bias", "backwards", "random",
          "copies", "shared-bias")
FLEET = ("copies", "shared-bias")  # breaks of the whole voting fleet, not of the canary
CANARY = "patchtst"


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rule(violation: str) -> str:
    """The rule a violation names, without its figures (for counting first causes)."""
    for words, rule in (("worse than the baseline ensemble", "outcomes worse than the baseline"),
                        ("Fleiss' kappa", "ensemble agreement (copies)"), ("batch means", "sustained agreement"),
                        ("against the others' consensus", "relative hard disagreement"),
                        ("BUY and SELL", "ensemble hard disagreement"), ("agreement", "ensemble agreement"),
                        ("constant", "constant output"), ("% of actions", "majority share"),
                        ("HOLD", "HOLD dead zone"), ("std", "collapsed std"), ("P90", "narrow range"),
                        ("invalid", "invalid confidence"), ("telemetry", "telemetry lost")):
        if words in violation:
            return rule
    return violation[:40]


def one_run(job: tuple[str, str, str, int, float | None]) -> dict[str, Any]:
    """Write one simulated watch to its own stream, replay the monitor's rules over it, drop the stream."""
    from qtsafe.config import load_settings
    from qtsafe.monitor import run_replay
    from qtsafe.simulate import generate
    from qtsafe.telemetry.sources import RedisStreamSource

    url, scenario, market, seed, onset = job
    key = f"bench:{scenario}:{market}:{seed}"
    client = redis.Redis.from_url(url)
    entries = list(generate(scenario, EVENTS, seed=seed, end=END, spacing_ms=SPACING_MS, market=market,
                            onset=onset, target=None if scenario in ("healthy", *FLEET) else CANARY))
    pipe = client.pipeline(transaction=False)
    for i, entry in enumerate(entries):
        pipe.xadd(key, entry.fields, id=entry.id)
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(overrides={"base_dir": tmp}, env={})
        result = run_replay(settings, RedisStreamSource(client, key, url=url), entries[0].id, entries[-1].id,
                            model=CANARY, interval=CHECK_S)
    client.delete(key)
    first_ms = int(entries[0].id.split("-")[0])
    firings = [int((dt.datetime.fromisoformat(f["at"].replace("Z", "+00:00")).timestamp() * 1000 - first_ms)
                   // (CHECK_S * 1000)) + 1 for f in result.firings]
    return {"scenario": scenario, "market": market, "seed": seed, "onset": onset, "checks": result.checks,
            "first_check": firings[0] if firings else None, "checks_fired": len(firings),
            "first_violation": result.firings[0]["violations"][0] if result.firings else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy", type=int, default=200, help="healthy runs per market")
    parser.add_argument("--broken", type=int, default=10, help="runs per kind of break")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=1000,
                        help="seed of the first healthy run (another range adds runs to an earlier table)")
    parser.add_argument("--out", default="accuracy.json", help="file name under bench/results/")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_redis(Path(tmp))
        try:
            jobs: list[tuple[str, str, str, int, float | None]] = []
            for market in ("plain", "regimes"):
                jobs += [(url, "healthy", market, args.first_seed + i, None) for i in range(args.healthy)]
            for scenario in BREAKS:
                jobs += [(url, scenario, "regimes", 5000 + i, 0.5) for i in range(args.broken)]
            with multiprocessing.get_context("fork").Pool(args.workers) as pool:
                runs = pool.map(one_run, jobs, chunksize=1)
        finally:
            server.kill()
    break_check = EVENTS // 2 * SPACING_MS // (CHECK_S * 1000)
    full_check = (EVENTS // 2 + 200) * SPACING_MS // (CHECK_S * 1000)  # the canary's window is all broken votes
    summary: dict[str, Any] = {"events_per_run": EVENTS, "checks_per_run": HOURS * 3600 // CHECK_S,
                               "healthy": {}, "broken": {}, "seconds": round(time.perf_counter() - started, 1)}
    print(f"{'healthy market':16s} {'runs':>5s} {'rolled back':>12s} {'rate':>7s}  95 % interval   "
          "most common first cause")
    for market in ("plain", "regimes"):
        mine = [r for r in runs if r["scenario"] == "healthy" and r["market"] == market]
        fired = [r for r in mine if r["first_check"] is not None]
        low, high = wilson(len(fired), len(mine))
        causes = statistics.multimode([_rule(r["first_violation"]) for r in fired]) if fired else []
        summary["healthy"][market] = {"runs": len(mine), "rolled_back": len(fired), "rate": len(fired) / len(mine),
                                      "interval": [low, high],
                                      "first_violations": [r["first_violation"] for r in fired][:20]}
        print(f"{market:16s} {len(mine):5d} {len(fired):12d} {len(fired) / len(mine):7.1%}  "
              f"[{low:.1%}, {high:.1%}]   {'; '.join(causes[:2])}")
    print()
    print(f"{'break (regimes)':16s} {'runs':>5s} {'caught':>7s} {'false alarm':>12s}  delay after a full window, checks"
          " (median / max)")
    for scenario in BREAKS if args.broken else ():
        mine = [r for r in runs if r["scenario"] == scenario]
        early = [r for r in mine if r["first_check"] is not None and r["first_check"] <= break_check]
        caught = [r for r in mine if r["first_check"] is not None and r["first_check"] > break_check]
        delays = [r["first_check"] - full_check for r in caught]
        summary["broken"][scenario] = {"runs": len(mine), "caught_after_break": len(caught),
                                       "false_alarm_before_break": len(early), "delays_checks": delays}
        delay = f"{statistics.median(delays):+.0f} / {max(delays):+d}" if delays else "never"
        print(f"{scenario:16s} {len(mine):5d} {len(caught):7d} {len(early):12d}  {delay}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / args.out).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    print(f"\n{len(runs)} runs in {summary['seconds']} s; details in {out / args.out}")


if __name__ == "__main__":
    main()
