#!/usr/bin/env python
"""Start-up benchmark: whole-process wall time of `qtsafe --help`, every `COMMAND --help`, and a gate over
10,000 producer-shape entries, both from a real redis-server and from a JSONL export. Medians of --runs.

Goals (issue 13): `qtsafe --help` < 0.3 s, each `COMMAND --help` < 0.15 s, a 10,000-event gate < 0.4 s.
Usage: ``python bench/bench_startup.py [--runs 7]``; prints one row per measurement and the goal it is held to.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_gate import load, start_redis

CUTOVER = "2020-01-01T00:00:00Z"


def wall(argv: list[str], runs: int, ok: tuple[int, ...] = (0,)) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if done.returncode not in ok:
            sys.exit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    qtsafe = [sys.executable, "-m", "qtsafe"]
    from qtsafe.cli import COMMANDS

    rows: list[tuple[str, float, float]] = [("qtsafe --help", wall([*qtsafe, "--help"], args.runs), 0.3)]
    for name in sorted(COMMANDS):
        rows.append((f"qtsafe {name} --help", wall([*qtsafe, name, "--help"], args.runs), 0.15))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, url = start_redis(workdir)
        try:
            load(url, 10_000)
            gate = [*qtsafe, "quality-gate", "--mode", "canary", "--after", CUTOVER, "--base-dir", str(workdir)]
            rows.append(("gate, 10,000 entries, redis", wall([*gate, "--redis-url", url], args.runs), 0.4))
            export = workdir / "window.jsonl"
            subprocess.run([*qtsafe, "export", "--after", CUTOVER, "--redis-url", url, "--out", str(export),
                            "-q"], check=True, capture_output=True)
            rows.append(("gate, 10,000 entries, --events JSONL", wall([*gate, "--events", str(export)], args.runs),
                         0.4))
        finally:
            server.kill()
    print(f"{'what':42s} {'median s':>9s} {'goal s':>7s}  verdict")
    for what, seconds, goal in rows:
        print(f"{what:42s} {seconds:9.3f} {goal:7.2f}  {'ok' if seconds < goal else 'OVER'}")


if __name__ == "__main__":
    main()
