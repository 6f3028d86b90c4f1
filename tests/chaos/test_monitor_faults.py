"""The monitor on a real redis-server that dies at the end of the watch or comes back without the stream,
and the real ``qtsafe monitor`` on a disk that refuses its state file (issue 10, items 3, 4 and 9).

The watches run on a fast clock (no real waiting): 11 checks a minute apart, a producer writing between
them, the fault played at a named check.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest

from qtsafe import monitor as mon
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from tests.canary.conftest import REPO_SRC, Root, run_qtsafe
from tests.chaos.conftest import ChaosRedis, no_traceback
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock, activated, write_events  # noqa: F401 - fixture re-exported
from tests.monitor.test_monitor_e2e import activate_on_real_redis

INJECT = Path(__file__).resolve().parent / "inject"
PER_TICK = 100


def fast_watch(activated: dict[str, Any], client: Any, on_sleep: Any) -> mon.MonitorResult:  # noqa: F811
    start = activated["at"]
    write_events(client, "healthy", 5, start - dt.timedelta(hours=2), start - dt.timedelta(hours=1), seed=99)
    return mon.run_monitor(activated["settings"], RedisStreamSource(client, STREAM), clock=FastClock(start, on_sleep),
                           duration=600, interval=60)


@pytest.mark.fault("redis-kill")
def test_redis_killed_for_the_final_checks_is_rolled_back_not_safe(root: Root, activated,  # noqa: F811
                                                                   chaos_redis: ChaosRedis) -> None:
    client = chaos_redis.client()

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        if chaos_redis.proc.poll() is None:
            write_events(client, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)
        if clock.sleeps == 9:  # checks 10 and 11 (the last two) and all after find no server
            chaos_redis.kill()

    result = fast_watch(activated, client, on_sleep)
    assert result.status is Status.FAIL, result.summary
    assert result.violations == ("telemetry lost: Redis errors on 3 consecutive checks (limit 3)",)
    assert result.checks == 12 and result.rollback["status"] == "PASS"
    assert "monitoring_completed" not in root.actions() and root.actions()[-1] == "rollback_executed"
    promote = run_qtsafe(root, "canary", "promote", "--to", "0.25", "--reason", "chaos")
    assert promote.returncode == 2, promote.stdout + promote.stderr
    no_traceback(promote)


@pytest.mark.fault("redis-wipe")
def test_stream_deleted_mid_watch_is_rolled_back(root: Root, activated, chaos_redis: ChaosRedis) -> None:  # noqa: F811
    client = chaos_redis.client()

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        if clock.sleeps <= 4:
            write_events(client, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)
        elif clock.sleeps == 5:
            client.delete(STREAM)

    result = fast_watch(activated, client, on_sleep)
    assert result.status is Status.FAIL and result.checks == 6, result.summary
    assert result.violations[0].startswith(f"telemetry lost: stream {STREAM} does not exist any more")
    assert result.rollback["status"] == "PASS"


@pytest.mark.fault("redis-wipe")
def test_redis_restarted_empty_and_refilled_is_rolled_back(root: Root, activated,  # noqa: F811
                                                           chaos_redis: ChaosRedis) -> None:
    client = chaos_redis.client()
    workdir = Path(chaos_redis.argv[chaos_redis.argv.index("--dir") + 1])

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        if clock.sleeps == 5:  # the OOM killer, and a server that comes back with nothing on disk
            chaos_redis.kill()
            shutil.rmtree(workdir / "appendonlydir", ignore_errors=True)
            (workdir / "dump.rdb").unlink(missing_ok=True)
            chaos_redis.start_again()
        write_events(client, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)  # the producer refills

    result = fast_watch(activated, client, on_sleep)
    assert chaos_redis.kills == 1
    assert result.status is Status.FAIL and result.checks == 6, result.summary
    assert result.violations[0].startswith("telemetry lost:"), result.violations
    assert "recreated" in result.violations[0]
    assert result.rollback["status"] == "PASS"


def _monitor_on_a_full_disk(root: Root, url: str) -> Any:
    return run_qtsafe(root, "monitor", "--interval", "1s", "--redis-url", url, timeout=120, extra_env={
        "PYTHONPATH": f"{INJECT}:{REPO_SRC}", "CHAOS_FAIL": "replace:qsc_monitor_state.json",
        "CHAOS_ERRNO": "ENOSPC"})


@pytest.mark.fault("disk-full")
def test_monitor_state_on_a_full_disk_rolls_back(root: Root, redis_server, real_redis) -> None:
    activate_on_real_redis(root, redis_server.url)
    done = _monitor_on_a_full_disk(root, redis_server.url)
    assert done.returncode == 2, done.stdout + done.stderr
    no_traceback(done)
    assert "FAIL: canary patchtst rolled back at check 1 - the monitor cannot record its work: cannot write " \
           in done.stdout and "qsc_monitor_state.json: No space left on device" in done.stdout, done.stdout
    record = root.records()[-1]
    assert record["action"] == "rollback_executed" and record["trigger"] == "qsc_monitor_write_failure"
    assert not root.dropin.exists()
    status = run_qtsafe(root, "canary", "status")  # the baseline runs, verified: the truth, exit 0
    assert status.returncode == 0 and status.stdout.startswith("NO CANARY"), status.stdout


@pytest.mark.fault("disk-full")
def test_monitor_state_on_a_full_disk_and_a_failing_rollback_leaves_it_unmonitored(root: Root, redis_server,
                                                                                   real_redis) -> None:
    activate_on_real_redis(root, redis_server.url)
    root.control(restart=["fail", "fail", "fail"])
    done = _monitor_on_a_full_disk(root, redis_server.url)
    assert done.returncode == 2, done.stdout + done.stderr
    no_traceback(done)
    assert "the ROLLBACK FAILED" in done.stdout and "is UNMONITORED" in done.stdout, done.stdout
    assert "monitoring_stopped" in root.actions()
    status = run_qtsafe(root, "canary", "status")
    assert status.returncode != 0, status.stdout
    assert not status.stdout.startswith("CANARY MONITORED"), status.stdout
