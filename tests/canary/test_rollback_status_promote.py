from __future__ import annotations

import json
import time
from typing import Any

import pytest

from qtsafe.canary import journal, lifecycle
from qtsafe.canary import state as st
from qtsafe.status import Status, exit_code_for
from tests.canary.conftest import BASELINE, FakeGate, Root
from tests.canary.outcome_stubs import passing_outcomes

NO_SLEEP = {"sleep": lambda s: None}


def _activate(root: Root, gate: FakeGate, **kwargs: Any) -> lifecycle.ActivationResult:
    result = lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                                **NO_SLEEP, **kwargs)
    assert result.status is Status.PASS, result.summary
    return result


def test_rollback_with_nothing_to_do_exits_zero(root: Root) -> None:
    before = root.snapshot()
    result = lifecycle.rollback(root.settings(), **NO_SLEEP)
    assert result.status is Status.PASS and result.nothing_to_do and exit_code_for(result.status) == 0
    assert root.snapshot() == before and root.calls() == []


def test_rollback_restores_baseline_and_is_idempotent(root: Root, gate: FakeGate) -> None:
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    env_before = root.live_environment()
    _activate(root, gate)
    root.clear_calls()
    result = lifecycle.rollback(root.settings(), trigger="qsc_monitor_violation",
                                violations=["Action collapse: HOLD=78.3% (>70%)"], reason="monitor", **NO_SLEEP)
    assert result.status is Status.PASS, result.summary
    assert root.verbs() == ["systemctl daemon-reload", "systemctl restart", "systemctl is-active",
                            "systemctl is-active", "systemctl show", "journalctl -u"]
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert root.live_environment() == env_before
    record = root.records()[-1]
    assert record["action"] == "rollback_executed" and record["trigger"] == "qsc_monitor_violation"
    assert record["violations"] == ["Action collapse: HOLD=78.3% (>70%)"] and record["canary_model"] == "patchtst"
    assert not (root.base / "data/systemd_overrides/qsc_canary.conf").exists()
    # The baseline backup stays for the record.
    assert json.loads((root.base / "data/baseline_model_weights.json").read_text()) == BASELINE
    again = lifecycle.rollback(root.settings(), **NO_SLEEP)
    assert again.status is Status.PASS and again.nothing_to_do
    assert journal.verify_journal(root.settings()).status is Status.PASS


def test_declined_confirmation_changes_nothing(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    before = root.snapshot()
    shown: list[str] = []
    result = lifecycle.rollback(root.settings(), confirm=lambda plan: shown.append(plan) or False, **NO_SLEEP)
    assert result.status is Status.BLOCKED and root.snapshot() == before
    assert "qsc_canary.conf" in shown[0]


def test_failed_rollback_journals_and_prints_manual_steps(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    root.control(restart=["fail"])
    result = lifecycle.rollback(root.settings(), **NO_SLEEP)
    assert result.status is Status.FAIL and exit_code_for(result.status) == 2
    assert result.summary.startswith("ROLLBACK FAILED")
    assert any("daemon-reload" in step for step in result.manual_steps)
    assert root.actions()[-1] == "rollback_failed"
    status = lifecycle.canary_status(root.settings())
    assert status.status is Status.FAIL and "rolling_back" in status.summary and status.repair
    # A second attempt (the unit starts now) repairs it.
    assert lifecycle.rollback(root.settings(), **NO_SLEEP).status is Status.PASS
    assert lifecycle.canary_status(root.settings()).status is Status.PASS


def test_orphan_dropin_is_inconsistent_and_rollback_repairs(root: Root) -> None:
    root.dropin.parent.mkdir()
    root.dropin.write_text('[Service]\nEnvironment="QSC_CANARY_MODEL=patchtst"\n')
    status = lifecycle.canary_status(root.settings())
    assert status.status is Status.FAIL and "no state" in status.summary and "rollback" in status.repair
    result = lifecycle.rollback(root.settings(), **NO_SLEEP)
    assert result.status is Status.PASS and not root.dropin.exists()


def test_corrupt_state_file_is_repaired(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    root.state_file.write_text("{not json")
    assert lifecycle.canary_status(root.settings()).status is Status.FAIL
    result = lifecycle.rollback(root.settings(), **NO_SLEEP)
    assert result.status is Status.PASS and not root.dropin.exists() and not root.state_file.exists()


# ---- status ----------------------------------------------------------------------------------------------

def test_status_no_canary(root: Root) -> None:
    result = lifecycle.canary_status(root.settings())
    assert result.status is Status.PASS and result.summary.startswith("NO CANARY")
    assert result.live_weights == BASELINE


def test_status_unmonitored_then_monitored_then_stale(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    settings = root.settings()
    result = lifecycle.canary_status(settings)
    assert result.status is Status.WAIT and exit_code_for(result.status) == 3
    assert result.summary.startswith("CANARY UNMONITORED")
    assert result.live_weights["patchtst"] == 0.1 and result.baseline_weights == BASELINE
    time.sleep(1.1)  # the heartbeat must be later than the activation (second resolution)
    st.write_heartbeat(settings, canary_model="patchtst", checks=3)
    result = lifecycle.canary_status(settings)
    assert result.status is Status.PASS and result.summary.startswith("CANARY MONITORED"), result.summary
    stale = root.settings(**{"monitor.heartbeat_max_age": 0.5})
    time.sleep(0.6)
    assert lifecycle.canary_status(stale).status is Status.WAIT


def test_status_detects_a_removed_or_edited_dropin(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    root.dropin.write_text(root.dropin.read_text() + "# edited\n")
    result = lifecycle.canary_status(root.settings())
    assert result.status is Status.FAIL and "edited" in result.summary
    root.dropin.unlink()
    assert lifecycle.canary_status(root.settings()).status is Status.FAIL


def test_status_detects_a_dead_unit(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    root.control(restart=["fail"])
    import subprocess

    subprocess.run(["systemctl", "restart", "x"], capture_output=True)
    result = lifecycle.canary_status(root.settings())
    assert result.status is Status.FAIL and "failed" in result.summary


# ---- promote ---------------------------------------------------------------------------------------------

def _monitor_completed(root: Root, violations: Any = None) -> None:
    state = json.loads(root.state_file.read_text())
    journal.append_record(root.settings(), "monitoring_completed", canary_id=state["canary_id"],
                          canary_model="patchtst", duration_hours=6, checks_performed=720, violations=violations,
                          result="safe" if not violations else "violations")


def test_promote_needs_a_clean_completed_monitor(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    before = root.snapshot()
    result = lifecycle.promote(root.settings(), to=0.25, reason="r", **NO_SLEEP)
    assert result.status is Status.BLOCKED and "no completed monitor" in result.summary
    assert root.snapshot() == before
    _monitor_completed(root, violations=["Flat predictions"])
    assert lifecycle.promote(root.settings(), to=0.25, reason="r", **NO_SLEEP).status is Status.BLOCKED


def test_promote_through_the_stages_to_a_new_baseline(root: Root, gate: FakeGate) -> None:
    _activate(root, gate)
    _monitor_completed(root)
    status = lifecycle.canary_status(root.settings())
    assert status.status is Status.WAIT and "awaiting promote" in status.summary
    result = lifecycle.promote(root.settings(), to=0.25, reason="6h clean", **NO_SLEEP)
    assert result.status is Status.PASS, result.summary
    assert result.weights == {"patchtst": 0.25, "xgb": 0.234375, "lgbm": 0.234375, "nhits": 0.28125}
    assert "QSC_CANARY_WEIGHT=0.25" in root.live_environment()
    # The stage changed: the old monitor no longer counts.
    assert lifecycle.promote(root.settings(), to=0.5, reason="r", **NO_SLEEP).status is Status.BLOCKED
    _monitor_completed(root)
    # From 0.5 on the canary's outcomes count too (tests/canary/test_promote_outcomes.py); here they pass.
    assert lifecycle.promote(root.settings(), to=0.5, reason="r", outcome_check=passing_outcomes,
                             **NO_SLEEP).status is Status.PASS
    _monitor_completed(root)
    final = lifecycle.promote(root.settings(), to=1.0, reason="all clean", outcome_check=passing_outcomes,
                              **NO_SLEEP)
    assert final.status is Status.PASS and final.baseline_updated, final.summary
    assert json.loads((root.base / "data/baseline_model_weights.json").read_text()) == {
        "patchtst": 1.0, "xgb": 0.0, "lgbm": 0.0, "nhits": 0.0}
    assert not root.dropin.exists() and (root.dropin.parent / "qsc_baseline.conf").exists()
    live = root.live_environment()
    assert "QSC_CANARY" not in live and '\\"patchtst\\":1.0' in live
    assert lifecycle.canary_status(root.settings()).status is Status.PASS
    assert root.actions()[-1] == "canary_promoted" and root.records()[-1]["baseline_updated"] is True
    assert journal.verify_journal(root.settings()).status is Status.PASS


def test_failed_promotion_rolls_back_to_the_baseline(root: Root, gate: FakeGate) -> None:
    env_before = root.live_environment()
    _activate(root, gate)
    _monitor_completed(root)
    root.control(restart=["die"], die_after_checks=1)
    result = lifecycle.promote(root.settings(), to=0.25, reason="r", **NO_SLEEP)
    assert result.status is Status.FAIL and result.rollback.status is Status.PASS
    assert root.live_environment() == env_before and not root.state_file.exists()


@pytest.mark.parametrize("to, reason, message", [(0.3, "r", "one of"), (0.25, " ", "--reason")])
def test_promote_bad_input(root: Root, to: float, reason: str, message: str) -> None:
    result = lifecycle.promote(root.settings(), to=to, reason=reason, **NO_SLEEP)
    assert result.status is Status.BLOCKED and message in result.summary


# ---- rollback --last -------------------------------------------------------------------------------------

def test_rollback_last_walks_back_through_env_backups(root: Root, gate: FakeGate) -> None:
    versions = [root.env_file.read_bytes()]
    for value in ("false", "true"):
        lifecycle.activate(root.settings(), model="patchtst", env_key="PATCHTST_SHADOW_ONLY", env_value=value,
                           gate=gate, open_source=lambda *a: object(), **NO_SLEEP)
        # An env-key canary is finished by hand here: drop its state as an operator accepting it would.
        st.clear_state(root.settings())
        versions.append(root.env_file.read_bytes())
        time.sleep(1.05)  # distinct backup stamps (the names also carry a counter)
    assert versions[0] != versions[1] != versions[2]
    first = lifecycle.rollback_last(root.settings(), **NO_SLEEP)
    assert first.status is Status.PASS and root.env_file.read_bytes() == versions[1]
    second = lifecycle.rollback_last(root.settings(), **NO_SLEEP)
    assert second.status is Status.PASS and root.env_file.read_bytes() == versions[0]
    third = lifecycle.rollback_last(root.settings(), **NO_SLEEP)
    assert third.status is Status.PASS and third.nothing_to_do
    assert root.env_file.read_bytes() == versions[0]
    assert [r["action"] for r in root.records()].count("rollback_executed") == 2
    assert len(list(root.backup_dir.glob("*.pre-restore.bak"))) == 2


def test_rollback_last_refuses_a_tampered_backup(root: Root, gate: FakeGate) -> None:
    lifecycle.activate(root.settings(), model="patchtst", env_key="PATCHTST_SHADOW_ONLY", env_value="false",
                       gate=gate, open_source=lambda *a: object(), **NO_SLEEP)
    st.clear_state(root.settings())
    (backup,) = root.backup_dir.glob("ai-engine.env.*.bak")
    backup.write_bytes(backup.read_bytes() + b"EVIL=1\n")
    before = root.env_file.read_bytes()
    result = lifecycle.rollback_last(root.settings(), **NO_SLEEP)
    assert result.status is Status.FAIL and "checksum" in result.summary
    assert root.env_file.read_bytes() == before
