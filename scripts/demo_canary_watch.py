"""Demo only: run ``qtsafe monitor`` on an in-memory (fakeredis) stream fed live by a stand-in producer.

    python scripts/demo_canary_watch.py --history telemetry.jsonl --healthy-seconds 2 -- monitor --duration 2m ...

The producer writes producer-shape trade.intent entries stamped with the current time, healthy for
--healthy-seconds, then with PatchTST collapsed (stuck at 0.6150). Everything after ``--`` is handed to the real
qtsafe CLI unchanged; only its Redis connection factory is pointed at the in-memory server. Exit code: qtsafe's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from typing import Any

try:
    import fakeredis
except ImportError:  # pragma: no cover - the demo installs the test extra
    print("demo_canary_watch.py: needs fakeredis (pip install -e '.[test]', as 'make install' does)", file=sys.stderr)
    sys.exit(2)

import qtsafe.telemetry
import qtsafe.telemetry.sources
from qtsafe.cli import cli
from qtsafe.simulate import generate

STREAM = "quantum:stream:trade.intent"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Producer(threading.Thread):
    """Writes ``rate`` entries a second, stamped now: healthy first, then the collapsed PatchTST."""

    def __init__(self, client: Any, healthy_seconds: float, rate: int, last_id: str | None) -> None:
        super().__init__(daemon=True)
        self.client, self.healthy_seconds, self.rate = client, healthy_seconds, rate
        self.last = _id_key(last_id) if last_id else (0, 0)
        self.stop = threading.Event()

    def run(self) -> None:
        started, batch, tick = time.monotonic(), 0, 0.2
        while not self.stop.is_set():
            scenario = "healthy" if time.monotonic() - started < self.healthy_seconds else "collapsed"
            count = max(int(self.rate * tick), 1)
            entries = generate(scenario, count, seed=100 + batch, end=dt.datetime.now(dt.UTC),
                               spacing_ms=max(int(1000 / self.rate), 1))
            for entry in entries:
                if _id_key(entry.id) > self.last:
                    self.client.xadd(STREAM, entry.fields, id=entry.id)
                    self.last = _id_key(entry.id)
            batch += 1
            self.stop.wait(tick)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", help="JSONL export loaded into the stream first (what came before)")
    parser.add_argument("--healthy-seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=100, help="entries per second")
    parser.add_argument("qtsafe_args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    args = opts.qtsafe_args[1:] if opts.qtsafe_args[:1] == ["--"] else opts.qtsafe_args
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    last_id = None
    if opts.history:
        with open(opts.history, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    entry = json.loads(line)
                    client.xadd(STREAM, entry["fields"], id=entry["id"])
                    last_id = str(entry["id"])

    def factory(settings: Any) -> Any:
        return fakeredis.FakeRedis(server=server)

    qtsafe.telemetry.sources.redis_client = factory
    qtsafe.telemetry.redis_client = factory
    producer = Producer(client, opts.healthy_seconds, opts.rate, last_id)
    producer.start()
    try:
        code = cli.main(args, prog_name="qtsafe", standalone_mode=False)
    finally:
        producer.stop.set()
        producer.join(timeout=5)
    return code if isinstance(code, int) else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
