"""Chaos fixtures: a dedicated redis-server that can be SIGKILLed and restarted on its own port, the
canary test root (fake systemctl on PATH), subprocess helpers, and the suite's fault ledger.

Every chaos test declares the fault it injects with ``@pytest.mark.fault("<kind>")``; tests that inject
several faults (one per SIGKILL, per Redis kill, per fuzz example) say how many through the ``faults``
fixture. At the end of a run the ledger prints one line per fault kind (tests, faults injected, outcomes,
time); ``CHAOS_SUMMARY_FILE=<path>`` also writes it as JSON. ``docs/reliability.md`` is generated from it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.canary.conftest import REPO_SRC, FakeGate, Root, gate, root  # noqa: F401 - fixtures re-exported
from tests.conftest import RedisServer

FAULT_KINDS = {
    "redis-kill": "redis-server SIGKILLed while a command reads the stream",
    "redis-restart": "redis-server SIGKILLed and restarted (same port, data kept) during a monitor",
    "sigkill-step": "a qtsafe command SIGKILLed at a named step (TEST_QTSAFE_CRASH_AT), mid-systemctl or mid-watch",
    "lock-contention": "two canary commands for the same unit at once",
    "disk-full": "writes fail: file-size limit (EFBIG), ENOSPC on rename, or a file where a directory must be",
    "redis-wipe": "the stream's key deleted, or redis-server restarted empty and refilled, under a running monitor",
    "fuzz": "arbitrary bytes and field values in stream entries, read by the real CLI",
    "story": "an operator's whole loop on a real redis-server (no fault: the reference run)",
    "hostile-unit": "unit names that are paths, shell, options or not systemd names, from flag, env, config or caller",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(kind): the kind of fault a chaos test injects (see tests/chaos)")


# ---- the fault ledger -------------------------------------------------------------------------------

class Faults:
    """Counts the faults one test injected (default 1); the count travels to the controller in the report."""

    def __init__(self, node: pytest.Item) -> None:
        self.node = node
        self.count = 0

    def add(self, n: int = 1) -> None:
        self.count += n


@pytest.fixture(autouse=True)
def faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    marker = request.node.get_closest_marker("fault")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: chaos tests must declare @pytest.mark.fault(kind)")
    kind = marker.args[0]
    if kind not in FAULT_KINDS:
        raise pytest.UsageError(f"{request.node.nodeid}: unknown fault kind {kind!r}")
    ledger = Faults(request.node)
    yield ledger
    request.node.user_properties.append(("fault_kind", kind))
    request.node.user_properties.append(("faults_injected", ledger.count or (0 if kind == "story" else 1)))


_LEDGER: list[dict[str, Any]] = []
_STARTED = time.monotonic()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith("tests/chaos/"):
        return
    props = dict(report.user_properties)
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "xfailed" if hasattr(report, "wasxfail") and report.outcome == "skipped" else report.outcome
        if hasattr(report, "wasxfail") and report.outcome == "passed":
            outcome = "xpassed"
        _LEDGER.append({"test": report.nodeid, "outcome": outcome, "seconds": round(report.duration, 2),
                        "kind": props.get("fault_kind"), "faults": props.get("faults_injected", 0)})
    elif report.when == "teardown" and props.get("fault_kind"):
        # user_properties are complete only after teardown: patch the call entry.
        for row in reversed(_LEDGER):
            if row["test"] == report.nodeid:
                row["kind"], row["faults"] = props["fault_kind"], props["faults_injected"]
                break


def _summary() -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}
    for row in _LEDGER:
        k = kinds.setdefault(row["kind"] or "?", {"tests": 0, "faults": 0, "seconds": 0.0, "outcomes": {}})
        k["tests"] += 1
        k["faults"] += row["faults"] or 0
        k["seconds"] = round(k["seconds"] + row["seconds"], 2)
        k["outcomes"][row["outcome"]] = k["outcomes"].get(row["outcome"], 0) + 1
    return {"wall_seconds": round(time.monotonic() - _STARTED, 1), "tests": len(_LEDGER),
            "faults": sum(k["faults"] for k in kinds.values()), "kinds": kinds,
            "results": sorted(_LEDGER, key=lambda r: r["test"])}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _LEDGER:
        return
    summary = _summary()
    write = terminalreporter.write_line
    terminalreporter.section("chaos ledger")
    write(f"{'fault kind':<16} {'tests':>5} {'faults':>7} {'test-seconds':>12}  outcomes")
    for kind, k in sorted(summary["kinds"].items()):
        outcomes = ", ".join(f"{v} {o}" for o, v in sorted(k["outcomes"].items()))
        write(f"{kind:<16} {k['tests']:>5} {k['faults']:>7} {k['seconds']:>12.1f}  {outcomes}")
    write(f"{'total':<16} {summary['tests']:>5} {summary['faults']:>7}   wall {summary['wall_seconds']:.1f} s")
    target = os.environ.get("CHAOS_SUMMARY_FILE")
    if target:
        Path(target).write_text(json.dumps(summary, indent=2) + "\n")


# ---- a redis-server we may kill ---------------------------------------------------------------------

class ChaosRedis(RedisServer):
    """A dedicated redis-server with an append-only file, so a SIGKILL loses nothing acknowledged and a
    restart on the same port brings the same stream back (as systemd's Restart=always would)."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        super().__init__(workdir, "--appendonly", "yes", "--appendfsync", "no", *extra)
        self.argv = list(self.proc.args)  # type: ignore[arg-type]
        self.kills = 0

    def kill(self) -> None:
        """SIGKILL, as the OOM killer would: no shutdown, no save."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def start_again(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = self.client()
        while True:
            try:
                client.ping()
                break
            except redis.BusyLoadingError:
                time.sleep(0.01)
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not restart on port {self.port}") from None
                time.sleep(0.01)
        client.close()

    def xrange_calls(self, client: redis.Redis) -> int:
        return int(client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0))

    def kill_after_xranges(self, pages: int, *, timeout: float = 30) -> threading.Thread:
        """In the background: once ``pages`` XRANGE calls were served, freeze every client (CLIENT PAUSE, so the
        reader is certainly mid-read, waiting on its next page) and SIGKILL the server."""
        client = self.client()
        seen: dict[str, int] = {}

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                calls = self.xrange_calls(client)
                if calls >= pages:
                    seen["calls"] = calls
                    client.execute_command("CLIENT", "PAUSE", "60000", "ALL")
                    self.kill()
                    return
                time.sleep(0.0005)

        thread = threading.Thread(target=watch, name="redis-killer", daemon=True)
        thread.seen = seen  # type: ignore[attr-defined]
        thread.start()
        return thread


@pytest.fixture
def chaos_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosRedis]:
    server = ChaosRedis(tmp_path_factory.mktemp("chaos-redis"))
    yield server
    server.stop()


# ---- subprocesses -----------------------------------------------------------------------------------

def qtsafe_env(base: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m qtsafe`` subprocess: no QTSAFE_* from the test process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env["PYTHONPATH"] = str(REPO_SRC)
    env["QTSAFE_CHARTS"] = "false"  # a chart costs ~1 s a report; test_chart_faults.py turns them on
    if base is not None:
        env["QTSAFE_BASE_DIR"] = str(base)
    env.update(extra)
    return env


def qtsafe(*args: str, env: dict[str, str], timeout: float = 60, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qtsafe", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, **popen)


def qtsafe_popen(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qtsafe", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **popen)


def no_traceback(proc: subprocess.CompletedProcess[str] | Any) -> None:
    """The exit-code contract: a one-line cause on stderr, never a traceback."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (for 'nothing changed' and 'intact' comparisons)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
