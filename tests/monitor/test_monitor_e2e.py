"""The monitor through its real entry point and a real redis-server: SIGTERM, and a collapse written by
another process during a fast-clock watch, rolled back and verified through the fake systemctl."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from qtsafe import monitor as mon
from qtsafe.canary import state as st
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.timeutil import iso
from tests.canary.conftest import REPO_SRC, Root, run_qtsafe
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock

pytestmark = pytest.mark.integration


def activate_on_real_redis(root: Root, url: str) -> dict:
    sim = run_qtsafe(root, "simulate", "--scenario", "healthy", "--events", "600", "--redis-url", url)
    assert sim.returncode == 0, sim.stderr
    root.control(initial="active")
    act = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--redis-url", url, "--json")
    assert act.returncode == 0, act.stdout + act.stderr
    return json.loads(act.stdout)


def test_sigterm_stops_with_exit_3_and_journals(root: Root, redis_server, real_redis) -> None:
    activate_on_real_redis(root, redis_server.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(root.env(), PYTHONPATH=str(REPO_SRC))
    proc = subprocess.Popen([sys.executable, "-m", "qtsafe", "monitor", "--interval", "1s", "--redis-url",
                             redis_server.url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    heartbeat = st.heartbeat_path(root.settings())
    deadline = time.monotonic() + 30
    while not heartbeat.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert heartbeat.exists(), "the monitor never wrote a heartbeat"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, out + err
    assert out.splitlines()[0].startswith("[")  # a status line per tick first
    assert "STOPPED: monitor of canary patchtst stopped after" in out and "received SIGTERM" in out
    record = root.records()[-1]
    assert record["action"] == "monitoring_stopped" and record["reason"] == "received SIGTERM"
    status = run_qtsafe(root, "canary", "status")
    assert status.returncode in (0, 3)  # heartbeat fresh for a moment; never an error


def test_collapse_written_by_another_process_is_rolled_back(root: Root, redis_server, real_redis) -> None:
    activated = activate_on_real_redis(root, redis_server.url)
    settings = root.settings(redis_url=redis_server.url)
    canary = st.active_canary(settings)
    start = dt.datetime.fromisoformat(canary.activated_at.replace("Z", "+00:00"))
    root.clear_calls()

    def producer(clock: FastClock, before: dt.datetime) -> None:
        scenario = "collapsed" if clock.sleeps > 5 else "healthy"
        done = run_qtsafe(root, "simulate", "--scenario", scenario, "--events", "60", "--end", iso(clock.t),
                          "--seed", str(clock.sleeps), "--redis-url", redis_server.url)
        assert done.returncode == 0, done.stderr

    clock = FastClock(start, producer)
    result = mon.run_monitor(settings, RedisStreamSource(real_redis, STREAM), clock=clock, interval=60)
    assert result.status is Status.FAIL
    assert result.violations[0].startswith("patchtst:")
    assert result.rollback["status"] == "PASS"
    verbs = root.verbs()
    assert verbs[:3] == ["systemctl daemon-reload", "systemctl restart", "systemctl is-active"]
    assert not root.dropin.exists()
    assert "QSC_CANARY_MODEL" not in root.live_environment()
    actions = root.actions()
    assert actions[0] == "canary_activated" and actions[1] == "monitoring_started"
    assert actions[-1] == "rollback_executed"
    rb = root.records()[-1]
    assert rb["trigger"] == "qsc_monitor_violation" and rb["violations"] == list(result.violations)
    assert result.report_path.is_file() and activated["status"] == "PASS"
    verify = run_qtsafe(root, "journal", "verify")
    assert verify.returncode == 0, verify.stdout


def test_no_canary_is_exit_2_one_line(root: Root) -> None:
    done = run_qtsafe(root, "monitor", "--interval", "1s")
    assert done.returncode == 2
    assert done.stderr.startswith("qtsafe: error: no active canary on quantum-ai-engine.service")
    assert len(done.stderr.splitlines()) == 1


def test_replay_needs_a_model(root: Root) -> None:
    """The old spelling `monitor --replay` (kept as an alias of `monitor replay`) still checks its --model."""
    done = run_qtsafe(root, "monitor", "--replay", "1-0", "2-0")
    assert done.returncode == 2 and "--replay needs --model" in done.stderr
