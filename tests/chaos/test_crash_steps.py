"""SIGKILL where tests/canary/test_crash.py does not reach: the automatic rollback of a failed activation
killed at each of its steps, env-key activations killed at each step, a rollback killed twice, and a
promotion killed while systemctl restarts the unit.

At every crash point the files on disk must be whole: no temp file, a state file that parses and says
what was in flight, every recorded backup present with its checksum, every touched live file either its
pre-canary bytes or exactly what qtsafe wrote, and a journal whose chain verifies. Then ``status``
explains (exit 2) and ``rollback`` repairs, byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qtsafe.canary import journal, lifecycle
from qtsafe.canary import state as st
from qtsafe.status import Status
from qtsafe.timeutil import parse_utc
from tests.canary.conftest import REPO_SRC, FakeGate, Root, run_qtsafe
from tests.canary.outcome_stubs import passing_outcomes, write_agreeing
from tests.chaos.conftest import Faults
from tests.conftest import STREAM, healthy_events_file

ENV_KEY = "PATCHTST_SHADOW_ONLY"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return healthy_events_file(tmp_path_factory, 400)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _live(root: Root) -> dict[str, bytes]:
    return {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}


def assert_whole(root: Root, before: dict[str, bytes]) -> dict[str, Any] | None:
    """Nothing lost or half-written at a crash point; returns the state file's contents (or None)."""
    leftovers = [p for p in root.path.rglob(".*.tmp")]
    assert leftovers == [], f"temp files left: {leftovers}"
    settings = root.settings()
    assert journal.verify_journal(settings).status is Status.PASS
    state = st.load_state(settings)  # raises on a torn or unknown file
    if state is None:
        assert not root.dropin.exists()
        assert _live(root) == before
        return None
    assert state["phase"] in (st.PHASE_APPLYING, st.PHASE_ACTIVE, st.PHASE_ROLLING_BACK)
    for backup in state["backups"]:
        data = Path(backup["path"]).read_bytes()
        assert _sha(data) == backup["sha256"], f"backup {backup['path']} damaged"
    for entry in state["touched"]:
        path = Path(entry["path"])
        rel = str(path.relative_to(root.path))
        current = path.read_bytes() if path.exists() else None
        allowed = {before.get(rel) and _sha(before[rel]), entry.get("written_sha256")}
        if path == root.dropin:
            allowed.add(state.get("dropin_sha256"))  # a promotion rewrites the canary drop-in
        if entry.get("written_sha256") is None and current is not None:
            # qsc_baseline.conf of a final promotion: its sha is not recorded; it must be a whole drop-in.
            assert current.startswith(b"# Written by qtsafe") and current.endswith(b"\n"), f"{rel} half-written"
            assert current.count(b"\nEnvironment=") == 1, f"{rel} half-written"
            continue
        if entry.get("backup") is None:
            assert current is None or _sha(current) in allowed, f"{rel} half-written"
        else:
            assert current is not None and _sha(current) in allowed | {entry["backup_sha256"]}, f"{rel} half-written"
    return state


def status_explains_and_rollback_repairs(root: Root, before: dict[str, bytes], env_before: str) -> None:
    proc = run_qtsafe(root, "canary", "status")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("CANARY INTERRUPTED: patchtst "), proc.stdout
    assert "canary rollback" in proc.stdout
    repair(root, before, env_before)


def repair(root: Root, before: dict[str, bytes], env_before: str) -> None:
    settings = root.settings()
    repaired = lifecycle.rollback(settings, reason="repair after crash", sleep=lambda s: None)
    assert repaired.status is Status.PASS, repaired.summary
    assert _live(root) == before
    assert root.live_environment() == env_before
    assert not root.state_file.exists()
    assert not (root.base / "data" / "qsc_canary_weights.json").exists()
    assert not (root.base / "data" / "systemd_overrides" / "qsc_canary.conf").exists()
    assert lifecycle.canary_status(settings).status is Status.PASS
    assert journal.verify_journal(settings).status is Status.PASS
    assert root.actions()[-1] == "rollback_executed"


@pytest.mark.fault("sigkill-step")
@pytest.mark.parametrize("step", lifecycle.ROLLBACK_STEPS)
def test_automatic_rollback_of_a_failed_activation_killed_at_each_step(root: Root, events: Path, step: str) -> None:
    before, env_before = _live(root), root.live_environment()
    root.control(restart=["fail"])  # the activation's restart fails, so it rolls itself back ... and dies
    proc = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--events", str(events),
                      extra_env={"TEST_QTSAFE_CRASH_AT": step})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    state = assert_whole(root, before)
    assert state is not None and state["phase"] == st.PHASE_ROLLING_BACK
    assert state["rollback_trigger"] == "activation_failed"
    expected = ["canary_activation_failed"] + (["rollback_executed"] if step == "rb_journaled" else [])
    assert root.actions() == expected
    status_explains_and_rollback_repairs(root, before, env_before)


@pytest.mark.fault("sigkill-step")
@pytest.mark.parametrize("step", lifecycle.ACTIVATION_STEPS)
def test_env_key_activation_killed_at_each_step(root: Root, events: Path, step: str) -> None:
    before, env_before = _live(root), root.live_environment()
    env_file_before = root.env_file.read_bytes()
    proc = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--env-key", ENV_KEY, "--value", "false",
                      "--events", str(events), extra_env={"TEST_QTSAFE_CRASH_AT": step})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    state = assert_whole(root, before)
    if step == "backed_up":  # before the state file: nothing live changed, nothing to explain
        assert state is None and root.env_file.read_bytes() == env_file_before
        assert lifecycle.canary_status(root.settings()).status is Status.PASS
        assert lifecycle.rollback(root.settings(), sleep=lambda s: None).nothing_to_do
        return
    assert state is not None and state["mode"] == "env_key"
    edited = root.env_file.read_bytes()
    assert edited in (env_file_before, env_file_before.replace(f"{ENV_KEY}=true".encode(), f"{ENV_KEY}=false".encode()))
    if step == "journaled":
        # Journaled but not yet marked active: the record exists, the state still says applying.
        assert root.actions() == ["canary_activated"] and state["phase"] == st.PHASE_APPLYING
    status_explains_and_rollback_repairs(root, before, env_before)
    assert root.env_file.read_bytes() == env_file_before


ROLLBACK_PAIRS = [("rb_started", "rb_restarted"), ("rb_files_restored", "rb_journaled"),
                  ("rb_verified", "rb_daemon_reloaded")]


@pytest.mark.fault("sigkill-step")
@pytest.mark.parametrize(("first", "second"), ROLLBACK_PAIRS)
def test_rollback_killed_then_its_repair_killed_again(root: Root, gate: FakeGate, first: str, second: str,
                                                      faults: Faults) -> None:
    before, env_before = _live(root), root.live_environment()
    activated = lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                                   sleep=lambda s: None)
    assert activated.status is Status.PASS
    for step in (first, second):
        proc = run_qtsafe(root, "canary", "rollback", "--yes", "--reason", f"crash at {step}",
                          extra_env={"TEST_QTSAFE_CRASH_AT": step})
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
        faults.add()
        state = assert_whole(root, before)
        assert state is not None and state["phase"] == st.PHASE_ROLLING_BACK
    status_explains_and_rollback_repairs(root, before, env_before)
    assert root.actions()[0] == "canary_activated"


def _kill_while_restarting(root: Root, *args: str) -> None:
    """Run ``qtsafe *args`` until the fake systemctl is inside ``restart`` (it hangs), then SIGKILL qtsafe."""
    root.control(restart=["hang"], hang_seconds=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(root.env(), PYTHONPATH=str(REPO_SRC))
    proc = subprocess.Popen([sys.executable, "-m", "qtsafe", *args], env=env, cwd=root.path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "systemctl restart" not in root.verbs():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "qtsafe never reached systemctl restart"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        # The hanging fake systemctl was started by our qtsafe process, in its session: end it too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


@pytest.mark.fault("sigkill-step")
@pytest.mark.parametrize("to", ["0.25", "1.0"])
def test_promotion_killed_during_the_restart(root: Root, gate: FakeGate, to: str) -> None:
    before, env_before = _live(root), root.live_environment()
    settings = root.settings()
    activated = lifecycle.activate(settings, model="patchtst", gate=gate, open_source=lambda *a: object(),
                                   sleep=lambda s: None)
    assert activated.status is Status.PASS
    # Earlier stages promoted in-process, one at a time, each after a clean watch (monitoring_completed).
    ladder = [0.1, 0.25, 0.5, 1.0]
    for current, following in zip(ladder, ladder[1:], strict=False):
        journal.append_record(settings, "monitoring_completed", canary_id=activated.canary_id,
                              canary_model="patchtst", violations=None, result="safe", stage=current,
                              duration_hours=settings.monitor.duration / 3600)
        if following == float(to):
            break
        step = lifecycle.promote(settings, to=following, reason="chaos", sleep=lambda s: None,
                                 outcome_check=passing_outcomes)
        assert step.status is Status.PASS, step.summary
    records_before = root.actions()
    canary_dropin = root.dropin.read_bytes()
    root.clear_calls()
    # From 0.5 on the canary's outcomes since activation count: an export in which it always votes with the
    # others, judged over a 1-second horizon (qtsafe.toml in the subprocess's working directory).
    activated_ms = int(parse_utc(st.load_state(settings)["activated_at"]).timestamp() * 1000)
    time.sleep(max(0.0, activated_ms / 1000 + 3.5 - time.time()))
    events = write_agreeing(root.path / "outcomes.jsonl", activated_ms + 1, int(time.time() * 1000) - 1100)
    (root.path / "qtsafe.toml").write_text("[outcomes]\nhorizon = 1.0\n")
    _kill_while_restarting(root, "canary", "promote", "--to", to, "--reason", "chaos", "--events", str(events))
    assert root.verbs() == ["systemctl daemon-reload", "systemctl restart"]
    state = assert_whole(root, before)
    assert state is not None and state["phase"] == st.PHASE_APPLYING and state["step"] == f"promoting_to_{float(to)}"
    baseline_dropin = st.baseline_dropin_path(settings)
    if to == "1.0":
        # The promoted weights are in qsc_baseline.conf, the canary drop-in is gone; neither is journaled yet.
        assert baseline_dropin.exists() and not root.dropin.exists()
    else:
        assert root.dropin.read_bytes() != canary_dropin and b"QSC_CANARY_WEIGHT=0.25" in root.dropin.read_bytes()
    assert root.actions() == records_before  # the promotion was not journaled
    status_explains_and_rollback_repairs(root, before, env_before)
    assert not baseline_dropin.exists()


@pytest.mark.integration
@pytest.mark.fault("sigkill-step")
def test_monitor_killed_mid_watch_then_the_watchdog_rolls_back(root: Root, gate: FakeGate, redis_server: Any,
                                                               real_redis: Any) -> None:
    """The analyser dying fails closed: a SIGKILLed monitor journals nothing, its heartbeat goes stale,
    ``status`` says unmonitored, and the watchdog timer's run rolls the canary back (verified)."""
    before, env_before = _live(root), root.live_environment()
    settings = root.settings()
    activated = lifecycle.activate(settings, model="patchtst", gate=gate, open_source=lambda *a: object(),
                                   sleep=lambda s: None)
    assert activated.status is Status.PASS
    real_redis.xadd(STREAM, {"event_type": "trade.intent", "payload": "{}"})
    root.clear_calls()
    fast = {"QTSAFE_MONITOR_HEARTBEAT_MAX_AGE": "2"}  # stricter than the default 180 s, to wait 2 s, not 3 min
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(root.env(), PYTHONPATH=str(REPO_SRC), **fast)
    proc = subprocess.Popen([sys.executable, "-m", "qtsafe", "monitor", "--interval", "1s", "--redis-url",
                             redis_server.url], env=env, cwd=root.path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    heartbeat = st.heartbeat_path(settings)
    deadline = time.monotonic() + 30
    while not heartbeat.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the monitor never wrote a heartbeat"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    proc.communicate()
    assert root.actions() == ["canary_activated", "monitoring_started"]  # a SIGKILL journals nothing
    assert root.verbs() == [] and root.dropin.exists()
    time.sleep(2.2)
    status = run_qtsafe(root, "canary", "status", extra_env=fast)
    assert status.returncode == 3 and status.stdout.startswith("CANARY UNMONITORED: patchtst at 10%"), status.stdout
    assert "heartbeat is stale" in status.stdout
    root.clear_calls()
    watchdog = run_qtsafe(root, "monitor", "--watchdog", extra_env=fast)
    assert watchdog.returncode == 2, watchdog.stdout + watchdog.stderr
    assert watchdog.stdout.startswith("FAIL: monitor of canary patchtst is dead (monitor heartbeat is ")
    assert "canary rolled back" in watchdog.stdout
    assert root.verbs() == ["systemctl daemon-reload", "systemctl restart", "systemctl is-active",
                            "systemctl is-active", "systemctl show", "journalctl -u"]
    assert _live(root) == before and root.live_environment() == env_before
    assert root.actions() == ["canary_activated", "monitoring_started", "rollback_executed"]
    assert root.records()[-1]["trigger"] == "qsc_monitor_watchdog"
    assert journal.verify_journal(settings).status is Status.PASS
    assert run_qtsafe(root, "canary", "status").returncode == 0
