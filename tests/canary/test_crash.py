"""SIGKILL at every lifecycle step (``TEST_QTSAFE_CRASH_AT``): status explains, rollback repairs, bytes identical."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from qtsafe.canary import journal, lifecycle
from qtsafe.simulate import generate
from qtsafe.status import Status
from tests.canary.conftest import FakeGate, Root, run_qtsafe


@pytest.fixture(scope="module")
def healthy_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "healthy.jsonl"
    with open(path, "w") as handle:
        for entry in generate("healthy", 400):
            handle.write(json.dumps({"id": entry.id, "fields": entry.fields}) + "\n")
    return path


def _live(root: Root) -> dict[str, bytes]:
    return {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}


def _repair_and_check(root: Root, live_before: dict[str, bytes], env_before: str, expect_status: Status) -> None:
    settings = root.settings()
    status = lifecycle.canary_status(settings)
    assert status.status is expect_status, status.summary
    if expect_status is Status.FAIL:
        assert status.repair and "canary rollback" in status.repair
    repaired = lifecycle.rollback(settings, reason="repair after crash", sleep=lambda s: None)
    assert repaired.status is Status.PASS, repaired.summary
    assert _live(root) == live_before
    assert root.live_environment() == env_before
    assert lifecycle.canary_status(settings).status is Status.PASS
    assert not root.state_file.exists()
    assert journal.verify_journal(settings).status is Status.PASS


@pytest.mark.parametrize("step", lifecycle.ACTIVATION_STEPS)
def test_crash_during_activation(root: Root, healthy_events: Path, step: str) -> None:
    live_before, env_before = _live(root), root.live_environment()
    proc = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--events", str(healthy_events),
                      extra_env={"TEST_QTSAFE_CRASH_AT": step})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    # Before the state file exists nothing live has changed, so there is nothing to explain.
    expect = Status.PASS if step == "backed_up" else Status.FAIL
    _repair_and_check(root, live_before, env_before, expect)


@pytest.mark.parametrize("step", lifecycle.ROLLBACK_STEPS)
def test_crash_during_rollback(root: Root, gate: FakeGate, step: str) -> None:
    live_before, env_before = _live(root), root.live_environment()
    activated = lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                                   sleep=lambda s: None)
    assert activated.status is Status.PASS
    proc = run_qtsafe(root, "canary", "rollback", "--yes", extra_env={"TEST_QTSAFE_CRASH_AT": step})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    status = run_qtsafe(root, "canary", "status")
    assert status.returncode == 2 and "INTERRUPTED" in status.stdout and "canary rollback" in status.stdout
    _repair_and_check(root, live_before, env_before, Status.FAIL)


def test_real_gate_activation_and_rollback_via_subprocess(root: Root, healthy_events: Path) -> None:
    live_before = _live(root)
    proc = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--events", str(healthy_events), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "PASS" and data["gate_summary"].startswith("PASS: quality gate (canary)")
    unknown = run_qtsafe(root, "canary", "activate", "--model", "tft", "--events", str(healthy_events))
    assert unknown.returncode == 2
    proc = run_qtsafe(root, "canary", "rollback", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _live(root) == live_before


def test_unknown_model_with_the_real_gate(root: Root, healthy_events: Path) -> None:
    before = root.snapshot()
    proc = run_qtsafe(root, "canary", "activate", "--model", "tft", "--events", str(healthy_events))
    assert proc.returncode == 2 and proc.stdout.startswith("CANARY BLOCKED: quality gate did not pass")
    assert {k: v for k, v in root.snapshot().items() if "reports" not in k} == before
