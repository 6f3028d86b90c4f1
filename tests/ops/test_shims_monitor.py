"""The runbooks' background monitor: ``nohup python3 ops/model_safety/qsc_monitor.py --duration 3 >
logs/qsc_monitor.log 2>&1 & echo $! > logs/qsc_monitor.pid`` is the monitor itself (same PID, its log, hours)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.canary.conftest import REPO_SRC, Root

OPS = Path(__file__).resolve().parents[2] / "ops" / "model_safety"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_background_monitor_pid_log_and_hours(root: Root, activated: dict[str, Any], redis_server: Any,
                                              real_redis: Any, make_stream: Any) -> None:
    make_stream(real_redis, "healthy", 50)  # the stream exists; nothing new after the activation: inconclusive
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(root.env(), PYTHONPATH=str(REPO_SRC), QTSAFE_REDIS_URL=redis_server.url)
    line = (f"nohup {shlex.quote(sys.executable)} {shlex.quote(str(OPS / 'qsc_monitor.py'))} --duration 3 "
            "> logs/qsc_monitor.log 2>&1 &\necho $! > logs/qsc_monitor.pid")
    subprocess.run(["bash", "-c", line], env=env, cwd=root.base, check=True, timeout=30)
    pid = int((root.base / "logs" / "qsc_monitor.pid").read_text())
    heartbeat = root.base / "data" / "qsc_monitor_heartbeat.json"
    deadline = time.monotonic() + 30
    while not heartbeat.exists() and time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert heartbeat.exists(), (root.base / "logs" / "qsc_monitor.log").read_text()
    os.kill(pid, 15)  # kill $(cat logs/qsc_monitor.pid): the monitor itself gets SIGTERM
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    log = (root.base / "logs" / "qsc_monitor.log").read_text()
    assert log.startswith("[") and "check 1" in log, log
    assert "STOPPED: monitor of canary patchtst stopped after" in log and "received SIGTERM" in log, log
    started = [r for r in root.records() if r["action"] == "monitoring_started"]
    assert started[-1]["duration_hours"] == 3.0  # the runbooks' bare 3 is hours, not qtsafe's 3 seconds
    assert root.records()[-1]["action"] == "monitoring_stopped"
    assert json.loads(heartbeat.read_text())["canary_id"] == activated["canary"].canary_id
