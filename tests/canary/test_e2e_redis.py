"""End to end on a real redis-server: simulate healthy telemetry -> activate -> status -> rollback."""

from __future__ import annotations

import json
import time

import pytest

from qtsafe.canary import journal
from qtsafe.canary import state as st
from tests.canary.conftest import BASELINE, UNIT, Root, run_qtsafe

pytestmark = pytest.mark.integration


def test_operator_loop_on_real_redis(root: Root, redis_server, real_redis) -> None:  # noqa: ANN001
    url = redis_server.url
    sim = run_qtsafe(root, "simulate", "--scenario", "healthy", "--events", "1000", "--redis-url", url)
    assert sim.returncode == 0, sim.stderr
    assert real_redis.xlen("quantum:stream:trade.intent") == 1000
    root.control(initial="active")
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    env_before = root.live_environment()
    root.clear_calls()

    # The unit's ActiveEnterTimestamp (2026-01-10) precedes the simulated telemetry, so --after auto sees it all.
    act = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--redis-url", url, "--json")
    assert act.returncode == 0, act.stdout + act.stderr
    result = json.loads(act.stdout)
    assert result["status"] == "PASS" and result["summary"].startswith("CANARY ACTIVATED: patchtst 10.0%")
    assert result["gate_summary"].startswith("PASS: quality gate (canary)")
    assert result["canary_weights"] == {"patchtst": 0.1, "xgb": 0.28125, "lgbm": 0.28125, "nhits": 0.3375}
    assert [" ".join(c[:2]) for c in root.calls()] == [
        "systemctl is-active", "systemctl show", "systemctl show",  # unit active, Environment, ActiveEnterTimestamp
        "systemctl daemon-reload", "systemctl restart", "systemctl is-active", "systemctl is-active",
        "systemctl show", "journalctl -u"]
    assert root.calls()[2] == ["systemctl", "show", UNIT, "-p", "ActiveEnterTimestamp", "--timestamp=utc"]
    # Files: drop-in (live and local copy), canary and baseline weights, backups, state, the gate's report.
    data = root.base / "data"
    assert root.dropin.read_text() == (data / "systemd_overrides" / "qsc_canary.conf").read_text()
    assert json.loads((data / "baseline_model_weights.json").read_text()) == BASELINE
    assert json.loads((data / "qsc_canary_weights.json").read_text()) == result["canary_weights"]
    backups = sorted(p.name for p in root.backup_dir.iterdir())
    assert [b.split(".")[0] for b in backups] == ["ai-engine", "baseline_model_weights"]
    assert list((root.base / "reports" / "safety").glob("quality_gate_*_post_cutover.md"))
    (record,) = root.records()
    assert record["action"] == "canary_activated" and record["canary_model"] == "patchtst"
    assert record["quality_gate_events"] == 1000 and record["cutover_ts"] == "2026-01-10T05:43:15Z"
    assert {b["path"] for b in record["backups"]} >= {str(root.backup_dir / b) for b in backups}

    status = run_qtsafe(root, "canary", "status")
    assert status.returncode == 3 and status.stdout.startswith("CANARY UNMONITORED: patchtst at 10%")
    time.sleep(1.05)
    st.write_heartbeat(root.settings(), canary_model="patchtst", checks=1)
    status = run_qtsafe(root, "canary", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "PASS"

    root.clear_calls()
    rb = run_qtsafe(root, "canary", "rollback", "--yes", "--reason", "e2e", "--trigger", "qsc_monitor_violation",
                    "--violation", "Flat predictions: conf_std=0.0412 (<0.05)")
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert [" ".join(c[:2]) for c in root.calls()] == [
        "systemctl daemon-reload", "systemctl restart", "systemctl is-active", "systemctl is-active",
        "systemctl show", "journalctl -u"]
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert root.live_environment() == env_before
    assert not root.state_file.exists() and not (data / "qsc_canary_weights.json").exists()
    assert root.actions() == ["canary_activated", "rollback_executed"]
    last = root.records()[-1]
    assert last["trigger"] == "qsc_monitor_violation" and last["violations"] == [
        "Flat predictions: conf_std=0.0412 (<0.05)"] and last["prev_hash"] == record["hash"]
    assert journal.verify_journal(root.settings()).status.value == "PASS"
    assert run_qtsafe(root, "canary", "status").returncode == 0
