from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from qtsafe.canary import lifecycle
from qtsafe.status import Status, exit_code_for
from tests.canary.conftest import BASELINE, UNIT, FakeGate, Root

CANARY = {"patchtst": 0.1, "xgb": 0.28125, "lgbm": 0.28125, "nhits": 0.3375}


def activate(root: Root, gate: FakeGate, **kwargs: Any) -> lifecycle.ActivationResult:
    kwargs.setdefault("model", "patchtst")
    settings = root.settings(**kwargs.pop("settings", {}))
    return lifecycle.activate(settings, gate=gate, open_source=lambda *a: object(), sleep=lambda s: None, **kwargs)


def test_activation_writes_applies_verifies_and_journals(root: Root, gate: FakeGate) -> None:
    env_before = root.env_file.read_bytes()
    result = activate(root, gate)
    assert result.status is Status.PASS, result.problems
    assert result.summary == f"CANARY ACTIVATED: patchtst 10.0% on {UNIT} (verified)"
    assert result.canary_weights == CANARY and result.baseline_weights == BASELINE
    # The gate ran in canary mode for this model, in-process.
    # The whole ensemble is judged (the monitor will judge it all), not only the canary.
    assert gate.calls == [{"mode": "canary", "after": None, "models": ("lgbm", "nhits", "patchtst", "xgb"),
                           "write_report": True, "require_fresh": True}]
    # Drop-in, local copy, canary weights, baseline backup.
    dropin = root.dropin.read_text()
    assert 'Environment="ENSEMBLE_WEIGHTS={\\"lgbm\\":0.28125,\\"nhits\\":0.3375,\\"patchtst\\":0.1,' \
           '\\"xgb\\":0.28125}"' in dropin
    assert 'Environment="QSC_CANARY_MODEL=patchtst"' in dropin and 'Environment="QSC_CANARY_WEIGHT=0.1"' in dropin
    assert (root.base / "data/systemd_overrides/qsc_canary.conf").read_text() == dropin
    assert json.loads((root.base / "data/qsc_canary_weights.json").read_text()) == CANARY
    assert json.loads((root.base / "data/baseline_model_weights.json").read_text()) == BASELINE
    assert root.env_file.read_bytes() == env_before
    backups = sorted(p.name for p in root.backup_dir.iterdir())
    assert len(backups) == 2 and backups[0].startswith("ai-engine.env.") and backups[1].startswith("baseline_")
    assert root.verbs() == ["systemctl is-active", "systemctl show", "systemctl daemon-reload", "systemctl restart",
                            "systemctl is-active", "systemctl is-active", "systemctl show", "journalctl -u"]
    # The live unit carries the new weights (the fake answers from what daemon-reload loaded).
    assert "QSC_CANARY_MODEL=patchtst" in root.live_environment()
    (record,) = root.records()
    assert record["action"] == "canary_activated"
    for field in ("timestamp", "canary_model", "canary_weight", "weights", "cutover_ts", "quality_gate_events",
                  "monitoring_duration_hours", "rollback_cmd", "backups", "git_hash", "gate_summary", "operator",
                  "qtsafe_version", "journal_proof", "baseline_weights", "prev_hash", "hash"):
        assert field in record, field
    assert record["quality_gate_events"] == 342 and record["monitoring_duration_hours"] == 6
    assert len(record["journal_proof"]) == 20
    assert all(len(b["sha256"]) == 64 for b in record["backups"])
    assert record["rollback_cmd"] == result.rollback_command and "--yes" in record["rollback_cmd"]
    state = json.loads(root.state_file.read_text())
    assert state["phase"] == "active" and state["model"] == "patchtst"


def test_dry_run_changes_nothing_and_shows_the_plan(root: Root, gate: FakeGate) -> None:
    before = root.snapshot()
    result = activate(root, gate, dry_run=True)
    assert result.status is Status.PASS and result.dry_run
    assert root.snapshot() == before
    assert gate.calls[0]["write_report"] is False
    paths = [f["path"] for f in result.plan["files"]]
    assert str(root.dropin) in paths
    assert [" ".join(c[:2]) for c in result.plan["commands"]][:2] == ["systemctl daemon-reload", "systemctl restart"]
    assert "daemon-reload" not in root.verbs()


def test_engine_git_hash_is_recorded(root: Root, gate: FakeGate, tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "engine"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = activate(root, gate, settings={"engine_repo": str(repo)})
    assert result.verification["git_hash"] == head
    assert root.records()[-1]["git_hash"] == head


def _make_weights_file(root: Root, text: str) -> dict[str, Any]:
    root.unit_file.write_text(root.unit_file.read_text().replace('Environment="ENSEMBLE_WEIGHTS', "#"))
    path = root.path / "engine_weights.json"
    path.write_text(text)
    return {"weights_file": str(path)}


def test_baseline_from_weights_file(root: Root, gate: FakeGate) -> None:
    overrides = _make_weights_file(root, json.dumps(BASELINE))
    result = activate(root, gate, settings=overrides)
    assert result.status is Status.PASS and result.baseline_source.startswith("file:")
    assert result.canary_weights == CANARY


# ---- refusals: exit 2 and every file byte-identical --------------------------------------------------

def _env_key(root: Root, data: bytes) -> None:
    root.env_file.write_bytes(data)


REFUSALS: list[tuple[str, dict[str, Any], Any, str]] = [
    ("newline and ExecStart in the model", {"model": "patchtst\nExecStart=/bin/sh -c 'rm -rf /'"}, None,
     "invalid model name"),
    ("share above 0.5", {"share": 0.6}, None, "outside"),
    ("share zero", {"share": 0.0}, None, "outside"),
    ("weights not summing to 1", {}, lambda r: r.unit_file.write_text(r.unit_file.read_text().replace(
        '0.25,\\"nhits', '0.35,\\"nhits')), "sum to"),
    ("missing baseline", {}, lambda r: r.unit_file.write_text(r.unit_file.read_text().replace(
        'Environment="ENSEMBLE_WEIGHTS', "#")), "no baseline weights"),
    ("weights file missing", {"settings": {"weights_file": "/nonexistent/w.json"}},
     lambda r: r.unit_file.write_text(r.unit_file.read_text().replace('Environment="ENSEMBLE_WEIGHTS', "#")),
     "does not exist"),
    ("env file shadows the drop-in", {}, lambda r: r.env_file.write_text(
        r.env_file.read_text() + 'ENSEMBLE_WEIGHTS=\'{"xgb":1.0}\'\n'), "EnvironmentFile"),
    ("env key absent", {"env_key": "NOT_THERE", "env_value": "1"}, None, "does not occur"),
    ("env key duplicated", {"env_key": "LOG_LEVEL", "env_value": "DEBUG"},
     lambda r: r.env_file.write_text(r.env_file.read_text() + "LOG_LEVEL=WARN\n"), "occurs 2 times"),
    ("env value with a newline", {"env_key": "LOG_LEVEL", "env_value": "DEBUG\nExecStart=/bin/sh"}, None,
     "control character"),
    ("unwritable backup directory", {}, lambda r: (r.path / "backups").write_text("a file, not a dir"),
     "not a directory"),
    ("unit not active", {}, lambda r: r.control(initial="inactive"), "not active"),
]


@pytest.mark.parametrize("name, kwargs, setup, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_change_nothing(root: Root, gate: FakeGate, name: str, kwargs: dict[str, Any], setup: Any,
                                 message: str) -> None:
    if setup:
        setup(root)
    before = root.snapshot()
    result = activate(root, gate, **kwargs)
    assert result.status is Status.BLOCKED and exit_code_for(result.status) == 2
    assert message in result.summary, result.summary
    assert result.summary.endswith("(nothing changed)")
    assert root.snapshot() == before
    assert not any(v in root.verbs() for v in ("systemctl restart", "systemctl daemon-reload"))


@pytest.mark.parametrize("gate_kwargs, message", [
    ({"status": Status.FAIL}, "did not pass"),
    ({"status": Status.COLLECTED, "mode": "collection"}, "collection-mode"),
    ({"mode": "collection"}, "not canary mode"),
    ({"events": 150}, "at least 200"),
    ({"passed": False}, "did not"),
    ({"models": ()}, "unknown model"),
], ids=["fail", "collected", "collection-mode", "too-few-events", "model-failed", "unknown-model"])
def test_gate_refusals(root: Root, gate_kwargs: dict[str, Any], message: str) -> None:
    before = root.snapshot()
    result = activate(root, FakeGate(**gate_kwargs))
    assert result.status is Status.BLOCKED and message in result.summary
    assert root.snapshot() == before


def test_model_absent_from_baseline_but_in_telemetry_is_known(root: Root, gate: FakeGate) -> None:
    result = activate(root, gate, model="tft")
    assert result.status is Status.PASS
    assert result.canary_weights["tft"] == 0.1 and result.canary_weights["patchtst"] == 0.18


def test_unreachable_telemetry_is_refused(root: Root, gate: FakeGate) -> None:
    def broken(*args: Any) -> Any:
        raise ConnectionError("Connection refused")

    before = root.snapshot()
    result = lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=broken,
                                sleep=lambda s: None)
    assert result.status is Status.BLOCKED and "telemetry source unavailable" in result.summary
    assert root.snapshot() == before


def test_second_activation_is_refused_while_one_is_active(root: Root, gate: FakeGate) -> None:
    assert activate(root, gate).status is Status.PASS
    before = root.snapshot()
    result = activate(root, gate, model="xgb")
    assert result.status is Status.BLOCKED and "already active" in result.summary
    assert root.snapshot() == before


def test_lock_held_by_another_process_is_refused(root: Root, gate: FakeGate) -> None:
    from qtsafe.canary import state as st

    settings = root.settings()
    with st.unit_lock(settings):
        result = activate(root, gate)
    assert result.status is Status.BLOCKED and "another qtsafe canary command" in result.summary


def test_not_root_is_said_up_front(root: Root, gate: FakeGate, monkeypatch: pytest.MonkeyPatch) -> None:
    (root.path / "backups").write_text("a file")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = activate(root, gate)
    assert result.status is Status.BLOCKED and "not running as root (uid 1000)" in result.summary


# ---- failures while applying: automatic rollback, live files byte-identical -------------------------

FAILURES = [
    ("unit fails to start", {"restart": ["fail"]}, "failed with exit 1"),
    ("unit starts and dies", {"restart": ["die"], "die_after_checks": 1}, "died"),
    ("daemon-reload fails", {"daemon_reload": ["fail"]}, "daemon-reload"),
]


@pytest.mark.parametrize("name, control, message", FAILURES, ids=[f[0] for f in FAILURES])
def test_failure_while_applying_rolls_back(root: Root, gate: FakeGate, name: str, control: dict[str, Any],
                                           message: str) -> None:
    root.control(**control)
    live_before = root.snapshot(live_only=True)
    env_line_before = root.live_environment()
    result = activate(root, gate)
    assert result.status is Status.FAIL and exit_code_for(result.status) == 2
    assert message in result.summary and "rolled back and verified" in result.summary
    assert result.rollback is not None and result.rollback.status is Status.PASS
    live_after = root.snapshot(live_only=True)
    assert {k: v for k, v in live_after.items() if not k.startswith("backups")} == \
           {k: v for k, v in live_before.items() if not k.startswith("backups")}
    assert root.live_environment() == env_line_before
    assert root.actions() == ["canary_activation_failed", "rollback_executed"]
    assert root.records()[-1]["trigger"] == "activation_failed"
    assert not root.state_file.exists()
    assert not root.dropin.parent.exists()


def test_restart_hang_times_out_and_rolls_back(root: Root, gate: FakeGate) -> None:
    root.control(restart=["hang"], hang_seconds=5)
    result = activate(root, gate, settings={"canary.restart_timeout": 1.0})
    assert result.status is Status.FAIL and "timed out after 1s" in result.summary
    assert result.rollback is not None and result.rollback.status is Status.PASS
    assert not root.dropin.exists()


def _enospc_in(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if Path(kwargs.get("dir", "")) == directory:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr("qtsafe.fsio.tempfile.mkstemp", mkstemp)


def test_full_disk_writing_the_dropin_rolls_back(root: Root, gate: FakeGate, monkeypatch: pytest.MonkeyPatch) -> None:
    _enospc_in(root.dropin.parent, monkeypatch)
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    result = activate(root, gate)
    assert result.status is Status.FAIL and "No space left on device" in result.summary
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert "systemctl restart" in root.verbs()  # the rollback restarts onto the baseline, verified
    assert root.actions() == ["canary_activation_failed", "rollback_executed"]


def test_full_disk_writing_backups_leaves_everything_identical(root: Root, gate: FakeGate,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _enospc_in(root.backup_dir, monkeypatch)
    root.backup_dir.mkdir(parents=True)
    before = root.snapshot()
    result = activate(root, gate)
    assert result.status is Status.BLOCKED and "No space left on device" in result.summary
    assert root.snapshot() == before
    assert "systemctl restart" not in root.verbs()


# ---- env-key mode --------------------------------------------------------------------------------------

def test_env_key_mode_edits_one_line(root: Root, gate: FakeGate) -> None:
    before = root.env_file.read_bytes()
    result = activate(root, gate, env_key="PATCHTST_SHADOW_ONLY", env_value="false")
    assert result.status is Status.PASS, result.problems
    after = root.env_file.read_bytes()
    assert after == before.replace(b"PATCHTST_SHADOW_ONLY=true\n", b"PATCHTST_SHADOW_ONLY=false\n")
    assert not root.dropin.exists()
    assert "systemctl daemon-reload" not in root.verbs()
    (backup,) = root.backup_dir.glob("ai-engine.env.*.bak")
    assert backup.read_bytes() == before
    record = root.records()[-1]
    assert record["env_file"]["old_line"] == "PATCHTST_SHADOW_ONLY=true"
    rb = lifecycle.rollback(root.settings(), reason="done", sleep=lambda s: None)
    assert rb.status is Status.PASS
    assert root.env_file.read_bytes() == before


def test_env_key_mode_failure_restores_the_file(root: Root, gate: FakeGate) -> None:
    root.control(restart=["fail"])
    before = root.env_file.read_bytes()
    result = activate(root, gate, env_key="PATCHTST_SHADOW_ONLY", env_value="false")
    assert result.status is Status.FAIL and result.rollback.status is Status.PASS
    assert root.env_file.read_bytes() == before


def test_failing_final_state_write_rolls_back_instead_of_leaving_an_unwatched_canary(
        root: Root, gate: FakeGate, monkeypatch: pytest.MonkeyPatch) -> None:
    from qtsafe.canary import state as st
    from qtsafe.errors import WriteError

    real_save = st.save_state

    def save(settings: Any, state: st.CanaryState) -> None:
        if state.phase == st.PHASE_ACTIVE:
            raise WriteError("cannot write data/qsc_canary_state.json: No space left on device")
        real_save(settings, state)

    monkeypatch.setattr(st, "save_state", save)
    result = activate(root, gate)
    assert result.status is Status.FAIL
    assert result.summary.startswith("CANARY FAILED: cannot record the active canary")
    assert "rolled back" in result.summary
    assert not root.dropin.exists()
    assert root.actions() == ["canary_activated", "rollback_executed"]
