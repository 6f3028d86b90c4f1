"""Two canary commands for the same unit at once: exactly one proceeds; the others exit 2 having changed
nothing (the per-unit flock is taken before any preflight, file or systemctl call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from qtsafe.canary import journal, lifecycle
from qtsafe.simulate import generate
from qtsafe.status import Status
from tests.canary.conftest import REPO_SRC, UNIT, Root
from tests.chaos.conftest import Faults


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "healthy.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in generate("healthy", 400)))
    return path


def _popen(root: Root, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(root.env(), PYTHONPATH=str(REPO_SRC))
    return subprocess.Popen([sys.executable, "-m", "qtsafe", *args], env=env, cwd=root.path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _files(root: Root) -> dict[str, bytes]:
    return {k: v for k, v in root.snapshot().items() if not k.endswith("/")}


@pytest.mark.fault("lock-contention")
def test_commands_while_an_activation_holds_the_lock_change_nothing(
        root: Root, events: Path, run_cli: Callable[..., Result], faults: Faults) -> None:
    root.control(restart=["hang"], hang_seconds=3)
    first = _popen(root, "canary", "activate", "--model", "patchtst", "--events", str(events), "--json")
    deadline = time.monotonic() + 30
    while "systemctl restart" not in root.verbs():  # the first activation is inside its restart, lock held
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    files, calls = _files(root), root.calls()
    held = f"another qtsafe canary command is running for {UNIT}"
    contenders = {
        ("canary", "activate", "--model", "patchtst", "--events", str(events)): "CANARY BLOCKED: ",
        ("canary", "activate", "--model", "xgb", "--share", "0.2", "--events", str(events)): "CANARY BLOCKED: ",
        ("canary", "rollback", "--yes", "--reason", "contend"): "ROLLBACK FAILED: ",
        ("canary", "promote", "--to", "0.25", "--reason", "contend"): "PROMOTION BLOCKED: ",
    }
    for args, prefix in contenders.items():
        result = run_cli(*args)
        faults.add()
        assert result.exit_code == 2, result.output
        assert result.stdout.startswith(prefix + held), result.stdout
    assert first.poll() is None, "the first activation finished before the contenders ran: nothing was tested"
    assert _files(root) == files  # not a byte changed, no report, no backup, no journal line
    assert root.calls() == calls  # and not one systemctl call
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert json.loads(out)["summary"].startswith("CANARY ACTIVATED: patchtst 10.0%")
    assert root.actions() == ["canary_activated"]


@pytest.mark.fault("lock-contention")
def test_two_activations_started_together_exactly_one_proceeds(root: Root, events: Path) -> None:
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    procs = [_popen(root, "canary", "activate", "--model", "patchtst", "--events", str(events)) for _ in range(2)]
    results = [(p, *p.communicate(timeout=60)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, out, err) for p, out, err in results]
    (loser_out, loser_err), = [(out, err) for p, out, err in results if p.returncode == 2]
    assert "Traceback" not in loser_out + loser_err and loser_err == ""
    # It lost the lock, or it came second and found the canary active; either way before any change.
    assert loser_out.startswith((f"CANARY BLOCKED: another qtsafe canary command is running for {UNIT}",
                                 "CANARY BLOCKED: a canary is already active")), loser_out
    assert loser_out.rstrip().endswith("(nothing changed)")
    # Exactly one activation's worth of everything.
    assert root.actions() == ["canary_activated"]
    assert len(list(root.backup_dir.iterdir())) == 2  # baseline weights copy and env file backup
    assert len(list((root.base / "reports" / "safety").glob("quality_gate_*.md"))) == 1
    assert root.verbs().count("systemctl restart") == 1
    settings = root.settings()
    assert lifecycle.rollback(settings, sleep=lambda s: None).status is Status.PASS
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert journal.verify_journal(settings).status is Status.PASS
