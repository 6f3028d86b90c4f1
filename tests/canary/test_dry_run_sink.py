"""Issue 11 item 3: ``--dry-run`` runs the real executor against a recording sink, so its plan is the list of
steps a real run takes, in order; the recorder touches nothing and can never start a live rollback."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from qtsafe.canary import activate as canary_activate
from qtsafe.canary import lifecycle
from qtsafe.errors import SystemdError
from qtsafe.status import Status
from tests.canary.conftest import ENV_FILE_TEXT, UNIT, FakeGate, Root

STAMP = re.compile(r"\d{8}_\d{6}(?:_\d{2})?")
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")
MODES = {"dropin": {}, "env_key": {"env_key": "PATCHTST_SHADOW_ONLY", "env_value": "false"}}


def _norm(text: Any) -> Any:
    """Stamps and times differ between two runs of the same inputs; nothing else may."""
    if isinstance(text, str):
        return ISO.sub("<time>", STAMP.sub("<UTC stamp>", text))
    if isinstance(text, list):
        return [_norm(v) for v in text]
    if isinstance(text, dict):
        return {k: _norm(v) for k, v in text.items()}
    return text


def _activate(root: Root, gate: FakeGate, **kwargs: Any) -> lifecycle.ActivationResult:
    return lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                              sleep=lambda s: None, **kwargs)


def _replaced_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file an atomic write lands on, in order (fsio's writer ends each write with os.replace)."""
    landed: list[str] = []
    real = os.replace

    def spy(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        landed.append(str(dst))
        real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", spy)
    return landed


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_real_run_takes_exactly_the_steps_its_dry_run_planned(root: Root, gate: FakeGate, mode: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # An existing drop-in of someone else's is backed up too: the plan must say so, in its place.
    other = root.systemd_dir / f"{UNIT}.d" / "10-other.conf"
    other.parent.mkdir()
    other.write_text("[Service]\nEnvironment=OTHER=1\n")
    dry = _activate(root, gate, dry_run=True, **MODES[mode])
    assert dry.status is Status.PASS, dry.summary
    root.clear_calls()
    landed = _replaced_paths(monkeypatch)
    real = _activate(root, gate, **MODES[mode])
    monkeypatch.undo()
    assert real.status is Status.PASS, real.summary
    # The files, in the order they were really written, are the plan's writes (the journal is appended, not
    # replaced: it is checked through its records below).
    planned = [item["path"] for item in dry.plan["steps"] if "write" in item]
    assert _norm(landed) == _norm([p for p in planned if p != str(root.journal)])
    assert [r["action"] for r in root.records()] == [
        item["purpose"].removeprefix("journal record ") for item in dry.plan["steps"]
        if item.get("path") == str(root.journal)]
    # The commands the fake systemctl saw after the preflight's two reads are the plan's commands.
    assert root.calls()[2:] == dry.plan["commands"]
    # And the real run's own log of its sink steps equals the dry run's, stamps aside.
    assert _norm(real.plan["steps"]) == _norm(dry.plan["steps"])


def test_backups_are_named_as_the_real_run_names_them(root: Root, gate: FakeGate) -> None:
    dry = _activate(root, gate, dry_run=True)
    planned = {p["path"] for p in dry.plan["files"] if "<UTC stamp>" in p["path"]}
    assert planned == {str(root.backup_dir / "baseline_model_weights.<UTC stamp>.json"),
                       str(root.backup_dir / "ai-engine.env.<UTC stamp>.bak")}
    assert _activate(root, gate).status is Status.PASS
    assert {_norm(str(p)) for p in root.backup_dir.iterdir()} == planned


def test_the_plan_hides_the_env_file_and_shows_only_the_edited_line(root: Root, gate: FakeGate) -> None:
    dry = _activate(root, gate, dry_run=True, **MODES["env_key"])
    shown = json.dumps(dry.to_dict())
    assert "REDIS_URL" not in shown and "LOG_LEVEL" not in shown
    (edit,) = [f for f in dry.plan["files"] if f["path"] == str(root.env_file)]
    assert (edit["content"], edit["old_line"], edit["new_line"]) == (
        None, "PATCHTST_SHADOW_ONLY=true", "PATCHTST_SHADOW_ONLY=false")
    (backup,) = [f for f in dry.plan["files"] if f["path"].endswith(".bak")]
    assert backup["content"] is None
    assert root.env_file.read_text() == ENV_FILE_TEXT


class _FailingRecorder(canary_activate.RecordingSink):
    """A recorder whose restart fails, as a real one can: the executor goes down its failure path."""

    def _do_restart(self) -> None:
        raise SystemdError("restart failed (injected into the recorder)")


def test_a_failure_under_the_recorder_never_starts_a_live_rollback(root: Root, gate: FakeGate,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = root.snapshot()
    monkeypatch.setattr(canary_activate, "RecordingSink", _FailingRecorder)
    result = _activate(root, gate, dry_run=True)
    assert result.status is Status.FAIL and result.dry_run
    assert result.rollback is not None and result.rollback.summary.startswith("DRY RUN: a real run would roll back")
    assert "rollback" not in {item.get("write") for item in result.plan["steps"]}
    # Only the preflight's reads reached systemctl; no file changed, no journal record.
    assert root.verbs() == ["systemctl is-active", "systemctl show"]
    assert root.snapshot() == before and root.records() == []


def test_the_cli_prints_the_steps_in_the_order_of_a_real_run(root: Root, run_cli: Any,
                                                             patch_default_gate: FakeGate) -> None:
    result = run_cli("canary", "activate", "--model", "patchtst", "--dry-run")
    assert result.exit_code == 0, result.stdout + result.stderr
    steps = [line.split()[:2] for line in result.stdout.splitlines() if line.startswith(("  write ", "  run "))]
    names = [os.path.basename(target) if verb == "write" else target for verb, target in steps]
    assert names == [
        "baseline_model_weights.json", "baseline_model_weights.<UTC", "ai-engine.env.<UTC", "qsc_canary_state.json",
        "qsc_canary.conf", "qsc_canary.conf", "qsc_canary_weights.json", "qsc_canary_state.json",
        "systemctl", "systemctl", "systemctl", "systemctl", "systemctl", "journalctl",
        "qsc_canary.jsonl", "qsc_canary_state.json"]
