"""Redis dies under qtsafe: killed in the middle of a paged read, restarted during a monitor.

The reads are the real ones (the prefetching XRANGE pager behind ``python -m qtsafe``) against a real
redis-server that is SIGKILLed once it has served a few pages: CLIENT PAUSE freezes every client first,
so the reader is certainly waiting on its next page when the server dies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qtsafe import monitor as mon
from qtsafe.canary import journal
from qtsafe.canary import state as st
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource, redis_client
from tests.canary.conftest import Root
from tests.chaos.conftest import ChaosRedis, Faults, no_traceback, qtsafe, qtsafe_env, tree
from tests.conftest import STREAM, xadd_entries
from tests.monitor.conftest import FastClock, activated, write_events  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

ENTRIES = 20_000
PAGE = 20
AFTER = "2000-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosRedis]:
    """20,000 healthy producer-shape entries (1,000 pages of 20) in a server the tests may kill."""
    server = ChaosRedis(tmp_path_factory.mktemp("loaded-redis"))
    client = server.client()
    xadd_entries(client, [{"id": e.id, "fields": e.fields} for e in generate("healthy", ENTRIES)])
    client.close()
    yield server
    server.stop()


@pytest.fixture
def up(loaded: ChaosRedis) -> ChaosRedis:
    if loaded.proc.poll() is not None:
        loaded.start_again()
    return loaded


READERS = {
    "quality-gate canary": ("quality-gate", "--mode", "canary", "--after", AFTER),
    "quality-gate collection": ("quality-gate", "--mode", "collection", "--after", AFTER),
    "scoreboard": ("scoreboard", "--after", AFTER),
    "feature-sanity": ("feature-sanity", "--after", AFTER),
}


@pytest.mark.fault("redis-kill")
@pytest.mark.parametrize("command", list(READERS))
def test_killed_mid_read_exits_2_with_one_line_and_no_report(up: ChaosRedis, tmp_path: Path, command: str) -> None:
    base = tmp_path / "base"
    env = qtsafe_env(base, QTSAFE_PAGE_SIZE=str(PAGE))
    killer = up.kill_after_xranges(up.xrange_calls(up.client()) + 5)
    proc = qtsafe(*READERS[command], "--redis-url", up.url, env=env)
    killer.join(timeout=30)
    assert up.proc.poll() is not None, "the server was never killed"
    served = killer.seen["calls"]  # type: ignore[attr-defined]
    assert served < ENTRIES // PAGE, "killed only after the read had finished"
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stderr.startswith(f"qtsafe: error: Redis at {up.url} (stream {STREAM}): unreachable (")
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stdout == ""
    # No report at all, so certainly none claiming a pass.
    assert not (base / "reports").exists(), tree(base)


@pytest.mark.fault("redis-kill")
def test_killed_mid_read_then_restarted_the_rerun_counts_every_entry(up: ChaosRedis, tmp_path: Path) -> None:
    """The kill is not papered over by a silent reconnect; the operator's rerun sees the whole stream once."""
    base = tmp_path / "base"
    env = qtsafe_env(base, QTSAFE_PAGE_SIZE=str(PAGE))
    killer = up.kill_after_xranges(up.xrange_calls(up.client()) + 5)
    proc = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, "--redis-url", up.url, "--json", env=env)
    killer.join(timeout=30)
    up.start_again()  # systemd's Restart=always: the same port, the stream back from the AOF
    assert proc.returncode == 2, proc.stdout
    # --json: nothing, or the error as JSON; never a verdict.
    assert proc.stdout == "" or json.loads(proc.stdout)["status"] == "ERROR", proc.stdout
    assert not (base / "reports").exists()
    again = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, "--redis-url", up.url, "--json", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    data = json.loads(again.stdout)
    assert data["status"] == "PASS"
    assert data["reconciliation"]["read"] == ENTRIES and data["reconciliation"]["evaluated"] == ENTRIES
    assert data["reconciliation"]["balanced"]


@pytest.mark.fault("redis-kill")
def test_activation_gate_killed_mid_read_changes_nothing(root: Root, chaos_redis: ChaosRedis) -> None:
    client = chaos_redis.client()
    xadd_entries(client, [{"id": e.id, "fields": e.fields} for e in generate("healthy", 6000)])
    before, env_before = root.snapshot(), root.live_environment()
    root.clear_calls()
    env = qtsafe_env(**root.env(), QTSAFE_PAGE_SIZE=str(PAGE))
    killer = chaos_redis.kill_after_xranges(chaos_redis.xrange_calls(client) + 5)
    proc = qtsafe("canary", "activate", "--model", "patchtst", "--after", AFTER, "--redis-url", chaos_redis.url,
                  env=env, cwd=root.path)
    killer.join(timeout=30)
    assert killer.seen["calls"] < 6000 // PAGE  # type: ignore[attr-defined]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stdout.startswith(f"CANARY BLOCKED: Redis at {chaos_redis.url} (stream {STREAM}): unreachable (")
    assert root.snapshot() == before  # not even a gate report
    assert root.live_environment() == env_before
    # Preflight only: the unit was looked at, never reloaded or restarted.
    assert not {"systemctl daemon-reload", "systemctl restart"} & set(root.verbs())
    assert root.records() == []


# ---- the monitor and a Redis that goes away -----------------------------------------------------------

PER_TICK = 40


class Producer:
    """Plays the AI engine between ticks; it can only write while Redis is up. Counts what it wrote."""

    def __init__(self, server: ChaosRedis, plan: dict[int, str] | None = None) -> None:
        self.server = server
        self.plan = plan or {}  # sleep number -> "kill" | "restart"
        self.written = 0
        self.client = server.client()

    def __call__(self, clock: FastClock, before: dt.datetime) -> None:
        action = self.plan.get(clock.sleeps)
        if action == "kill":
            self.server.kill()
        elif action == "restart":
            self.server.start_again()
            self.client = self.server.client()
        if self.server.proc.poll() is None:
            write_events(self.client, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)
            self.written += PER_TICK


def _monitor(activated: dict[str, Any], server: ChaosRedis, producer: Producer,  # noqa: F811
             duration: float = 3600) -> mon.MonitorResult:
    settings = activated["settings"]
    real = redis_client(dataclasses.replace(settings, redis_url=server.url))
    # The stream exists before the canary (the activation's gate read it); these entries are not judged.
    write_events(real, "healthy", 5, activated["at"] - dt.timedelta(hours=2), activated["at"] - dt.timedelta(hours=1),
                 seed=99)
    clock = FastClock(activated["at"], producer)
    return mon.run_monitor(settings, RedisStreamSource(real, STREAM, page_size=PAGE, url=server.url), clock=clock,
                           interval=60, duration=duration)


def _states(result: mon.MonitorResult) -> list[str]:
    return [row["state"] for row in result.timeline]


@pytest.mark.fault("redis-restart")
def test_monitor_rides_out_a_restart_within_the_error_budget(
        root: Root, activated: dict[str, Any], chaos_redis: ChaosRedis, faults: Faults) -> None:  # noqa: F811
    # Down across checks 11 and 12 (two errors, under the limit of 3 in a row and 5 in all), back for check 13.
    producer = Producer(chaos_redis, {10: "kill", 12: "restart"})
    result = _monitor(activated, chaos_redis, producer)
    faults.add(chaos_redis.kills)
    assert result.status is Status.COMPLETED, result.summary
    states = _states(result)
    assert [i + 1 for i, s in enumerate(states) if s == "error"] == [11, 12]
    assert result.checks == 61 and result.violations == () and result.rollback is None
    # Nothing lost, nothing counted twice: every event written after activation, exactly once.
    assert result.events == producer.written == (60 - 2) * PER_TICK
    assert root.actions() == ["canary_activated", "monitoring_started", "monitoring_completed"]
    assert root.verbs() == []  # no rollback, the unit untouched
    assert st.active_canary(activated["settings"]) is not None
    report = json.loads(result.json_path.read_text())
    assert report["status"] == "COMPLETED" and [r["state"] for r in report["timeline"]].count("error") == 2


@pytest.mark.fault("redis-restart")
def test_monitor_rolls_back_when_redis_stays_down(
        root: Root, activated: dict[str, Any], chaos_redis: ChaosRedis, faults: Faults) -> None:  # noqa: F811
    producer = Producer(chaos_redis, {10: "kill"})
    result = _monitor(activated, chaos_redis, producer)
    faults.add(chaos_redis.kills)
    assert result.status is Status.FAIL
    assert result.checks == 13 and _states(result)[10:] == ["error", "error", "violation"]
    assert result.violations == ("telemetry lost: Redis errors on 3 consecutive checks (limit 3)",)
    assert result.rollback["status"] == "PASS"
    assert root.verbs() == ["systemctl daemon-reload", "systemctl restart", "systemctl is-active",
                            "systemctl is-active", "systemctl show", "journalctl -u"]
    assert not root.dropin.exists() and not root.state_file.exists()
    assert root.actions() == ["canary_activated", "monitoring_started", "rollback_executed"]
    record = root.records()[-1]
    assert record["trigger"] == "qsc_monitor_violation" and record["violations"] == list(result.violations)
    assert journal.verify_journal(activated["settings"]).status is Status.PASS


@pytest.mark.fault("redis-restart")
def test_monitor_rolls_back_when_a_flapping_redis_spends_the_total_budget(
        root: Root, activated: dict[str, Any], chaos_redis: ChaosRedis, faults: Faults) -> None:  # noqa: F811
    # Three outages (2 + 2 + 1 checks): never 3 in a row, 5 in all.
    plan = {5: "kill", 7: "restart", 15: "kill", 17: "restart", 25: "kill", 26: "restart"}
    producer = Producer(chaos_redis, plan)
    result = _monitor(activated, chaos_redis, producer)
    faults.add(chaos_redis.kills)
    assert result.status is Status.FAIL
    assert [i + 1 for i, s in enumerate(_states(result)) if s in ("error", "violation")] == [6, 7, 16, 17, 26]
    assert result.violations == ("telemetry unreliable: Redis errors on 5 checks in all (limit 5)",)
    assert result.rollback["status"] == "PASS" and not root.dropin.exists()
    assert root.actions()[-1] == "rollback_executed"


@pytest.mark.fault("redis-restart")
def test_monitor_tick_killed_mid_read_rereads_the_backlog_once(
        root: Root, activated: dict[str, Any], chaos_redis: ChaosRedis, faults: Faults) -> None:  # noqa: F811
    """A tick whose read dies half-way keeps nothing of it; the next tick reads the same entries again, once."""
    producer = Producer(chaos_redis)
    killers: list[Any] = []
    backlog = 5000

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        if clock.sleeps == 8:
            # A backlog of 250 pages arrives; the server dies after 5 of them are served to check 9.
            write_events(producer.client, "healthy", backlog, before, clock.t, seed=99)
            producer.written += backlog
            killers.append(chaos_redis.kill_after_xranges(chaos_redis.xrange_calls(producer.client) + 5))
            return
        if clock.sleeps == 9:
            killers[0].join(timeout=30)
            chaos_redis.start_again()
            producer.client = chaos_redis.client()
        producer(clock, before)

    producer_fn = on_sleep
    settings = activated["settings"]
    real = redis_client(dataclasses.replace(settings, redis_url=chaos_redis.url))
    write_events(real, "healthy", 5, activated["at"] - dt.timedelta(hours=2), activated["at"] - dt.timedelta(hours=1),
                 seed=98)  # the stream exists before the canary
    clock = FastClock(activated["at"], producer_fn)
    result = mon.run_monitor(settings, RedisStreamSource(real, STREAM, page_size=PAGE, url=chaos_redis.url),
                             clock=clock, interval=60, duration=1800)
    faults.add(chaos_redis.kills)
    assert chaos_redis.kills == 1 and killers[0].seen["calls"] < backlog // PAGE
    assert result.status is Status.COMPLETED, result.summary
    states = _states(result)
    assert states.count("error") == 1 and states[8] == "error"
    assert result.timeline[8]["new"] == 0 and result.timeline[9]["new"] == backlog + PER_TICK
    assert result.events == producer.written
