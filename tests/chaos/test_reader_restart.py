"""Redis restarted empty while a reader is descheduled between two pages (issue 10 item 2).

The reader is the real ``python -m qtsafe`` against a real redis-server without persistence. Once the
server has served a few of its 300 pages the reader is frozen (SIGSTOP to its process group, workers
included), the server is SIGKILLed, restarted empty on the same port and refilled by a producer with
healthy, newer entries; then the reader is resumed (SIGCONT). redis-py reconnects silently, so before
the fix the read went on against the new server and the gate reported PASS on part of the window.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtsafe.simulate import generate
from tests.chaos.conftest import ChaosRedis, no_traceback, qtsafe_env, qtsafe_popen, tree
from tests.conftest import STREAM, xadd_entries

pytestmark = pytest.mark.integration

ENTRIES = 6_000
PAGE = 20
AFTER = "2000-01-01T00:00:00Z"


@pytest.fixture
def volatile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosRedis]:
    """A server that comes back empty after a SIGKILL (no AOF, no RDB), holding 6,000 healthy entries."""
    server = ChaosRedis(tmp_path_factory.mktemp("volatile-redis"), "--appendonly", "no")
    client = server.client()
    xadd_entries(client, [{"id": e.id, "fields": e.fields} for e in generate("healthy", ENTRIES)])
    client.close()
    yield server
    server.stop()


def _freeze_after_pages(server: ChaosRedis, pid: int, pages: int, timeout: float = 30) -> tuple[int, int]:
    """SIGSTOP the reader's process group once the server has served ``pages`` more XRANGE calls.
    Returns (XRANGE calls served, processes frozen)."""
    client = server.client()
    target = server.xrange_calls(client) + pages
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = server.xrange_calls(client)
        if calls >= target:
            os.killpg(pid, signal.SIGSTOP)
            return calls, _wait_stopped(pid)
        time.sleep(0.0005)
    raise AssertionError(f"the reader never reached {pages} pages")


def _wait_stopped(pgid: int, timeout: float = 10) -> int:
    """Until every thread of every process in the group is stopped: kill() returns before the stop lands."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states: list[str] = []
        processes = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if int((proc / "stat").read_text().rpartition(")")[2].split()[2]) != pgid:
                    continue
                processes += 1
                states += [(task / "stat").read_text().rpartition(")")[2].split()[0]
                           for task in (proc / "task").iterdir()]
            except (OSError, IndexError, ValueError):
                continue  # a process that just ended
        if states and all(state in "tT" for state in states):
            return processes
        time.sleep(0.001)
    raise AssertionError(f"process group {pgid} did not stop")


# (arguments, environment, processes reading: the command, or the command and its two forked workers)
READERS = {
    "quality-gate": (("quality-gate", "--mode", "canary", "--after", AFTER), {}, 1),
    "quality-gate on 2 workers": (("quality-gate", "--mode", "canary", "--after", AFTER),
                                  {"QTSAFE_PARALLEL_MIN_ENTRIES": "1000"}, 3),
    "feature-sanity": (("feature-sanity", "--after", AFTER), {}, 1),
}


@pytest.mark.fault("redis-kill")
@pytest.mark.parametrize("reader", list(READERS))
def test_restart_empty_between_pages_fails_the_read(volatile: ChaosRedis, tmp_path: Path, reader: str) -> None:
    args, extra, processes = READERS[reader]
    base = tmp_path / "base"
    env = qtsafe_env(base, QTSAFE_PAGE_SIZE=str(PAGE), **extra)
    start = volatile.xrange_calls(volatile.client())
    proc = qtsafe_popen(*args, "--redis-url", volatile.url, env=env, start_new_session=True)
    try:
        served, frozen = _freeze_after_pages(volatile, proc.pid, 5)
        assert served - start < ENTRIES // PAGE, "frozen only after the read had finished"
        assert frozen == processes, f"{frozen} processes were reading"
        volatile.kill()
        volatile.start_again()
        client = volatile.client()
        assert client.exists(STREAM) == 0, "the server came back with the old stream"
        # The producer refills the new server with healthy entries, newer than any the reader saw.
        refill = generate("healthy", ENTRIES, seed=11, spacing_ms=1,
                          end=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
        xadd_entries(client, [{"id": e.id, "fields": e.fields} for e in refill])
        os.killpg(proc.pid, signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    proc.stdout, proc.stderr = stdout, stderr  # type: ignore[assignment]
    assert proc.returncode == 2, stdout + stderr
    no_traceback(proc)
    assert stderr.startswith(f"qtsafe: error: Redis at {volatile.url} (stream {STREAM}): "), stderr
    # Nearly always the restart is what is reported. Rarely (twice in many runs, on a loaded machine) the
    # resumed reader reported the dead socket instead of reconnecting: also a one-line exit 2 naming the
    # server and no report, never a verdict. The run_id message itself is pinned in test_source_restart.py.
    assert ("the Redis server changed during the read (run_id " in stderr or "unreachable (" in stderr), stderr
    assert len(stderr.splitlines()) == 1
    assert stdout == ""
    assert not (base / "reports").exists(), tree(base)
