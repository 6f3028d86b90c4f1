#!/usr/bin/env python
"""Read benchmark: ``qtsafe quality-gate`` over N producer-shape entries in a real redis-server, beside the floor.

The floor is redis-py with hiredis fetching the same range in XRANGE pages of 1,000 without parsing anything.
Every measurement runs in a fresh subprocess (median of --runs), floor and gate alternately; the ratio of the
medians is the headline and each run's own ratio (gate / the floor just before it) shows the spread. Peak RSS is
the whole process tree's (the gate reads a large stream on worker processes), sampled from /proc every 20 ms.
Usage: ``python bench/bench_gate.py [--entries 1000000] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
STREAM = "quantum:stream:trade.intent"

FLOOR_PLAIN = """
import sys, redis
c = redis.Redis.from_url(sys.argv[1])
cursor, n = "-", 0
while True:
    page = c.xrange(sys.argv[2], cursor, "+", count=1000)
    if not page:
        break
    n += len(page)
    if len(page) < 1000:
        break
    ms, seq = page[-1][0].decode().split("-")
    cursor = f"{ms}-{int(seq) + 1}"
print(n)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def load(url: str, entries: int) -> float:
    """XADD ``entries`` producer-shape entries: 20,000 simulated ones cycled with fresh, increasing IDs."""
    from qtsafe.simulate import generate

    distinct = [e.fields for e in generate("healthy", min(entries, 20_000), seed=1)]
    client = redis.Redis.from_url(url)
    start_ms = int(time.time() * 1000) - entries * 10
    pipe = client.pipeline(transaction=False)
    for i in range(entries):
        pipe.xadd(STREAM, distinct[i % len(distinct)], id=f"{start_ms + i * 10}-0")
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    sizes = [len(f["payload"]) for f in distinct[:1000]]
    return statistics.mean(sizes)


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the gate's reader workers), from /proc."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{current}/task/{current}/children") as handle:
                stack += [int(x) for x in handle.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total / 1024


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB of the whole process tree (sampled every 20 ms) and stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.stderr:
        err = proc.stderr.read()
        if os.waitstatus_to_exitcode(status) not in (0, 2, 3):
            sys.exit(f"{argv} failed: {err.decode()}")
    return wall, max(peak[0], usage.ru_maxrss / 1024), out.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-charts", action="store_true", help="time the gate without its PNG chart")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            t0 = time.perf_counter()
            payload = load(url, args.entries)
            print(f"loaded {args.entries:,} entries (mean payload {payload:.0f} B) in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
            gate = [sys.executable, "-m", "qtsafe", "quality-gate", "--mode", "canary", "--after",
                    "2000-01-01T00:00:00Z", "--redis-url", url, "--base-dir", tmp, "--quiet", "--json",
                    *(["--no-charts"] if args.no_charts else [])]
            floor = [sys.executable, "-c", FLOOR_PLAIN, url, STREAM]
            rows: dict[str, list[tuple[float, float]]] = {"floor": [], "gate": []}
            for run in range(args.runs):
                for name, argv in (("floor", floor), ("gate", gate)):
                    wall, rss, out = measure(argv, env)
                    rows[name].append((wall, rss))
                    if name == "gate":
                        read = json.loads(out)["reconciliation"]["read"]
                        assert read == args.entries, f"gate read {read} entries, expected {args.entries}"
                    print(f"run {run + 1} {name:<5} {wall:6.2f} s  peak RSS {rss:6.0f} MB", flush=True)
        finally:
            proc.terminate()
            proc.wait()
    med = {k: (statistics.median(w for w, _ in v), max(r for _, r in v)) for k, v in rows.items()}
    ratio = med["gate"][0] / med["floor"][0]
    # Each gate run follows its own floor run: on a shared machine the pair sees the same neighbours, so the
    # spread of the paired ratios says how far one run's ratio can be trusted.
    paired = sorted(g / f for (f, _), (g, _) in zip(rows["floor"], rows["gate"], strict=True))
    result = {
        "entries": args.entries,
        "runs": args.runs,
        "cores": os.cpu_count(),
        "floor_seconds": round(med["floor"][0], 2),
        "floor_peak_rss_mb": round(med["floor"][1]),
        "gate_seconds": round(med["gate"][0], 2),
        "gate_peak_rss_mb": round(med["gate"][1]),
        "ratio_to_floor": round(ratio, 2),
        "paired_ratios": [round(r, 2) for r in paired],
        "paired_ratio_median": round(statistics.median(paired), 2),
        "charts": not args.no_charts,
    }
    print(json.dumps(result, indent=2))
    print(f"quality-gate: {ratio:.2f}x the raw read floor (goal <= 1.5x; run by run {paired[0]:.2f}-{paired[-1]:.2f}x, "
          f"median {statistics.median(paired):.2f}x), peak RSS {med['gate'][1]:.0f} MB (goal <= 400 MB)")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_gate.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
