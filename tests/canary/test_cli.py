from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result

from qtsafe.canary import journal
from tests.canary.conftest import FakeGate, Root


@pytest.fixture
def cli(run_cli: Callable[..., Result], patch_default_gate: FakeGate) -> Callable[..., Result]:
    return run_cli


def test_help_has_summary_and_examples(cli: Callable[..., Result]) -> None:
    for args in (["canary"], ["canary", "activate"], ["canary", "rollback"], ["canary", "promote"],
                 ["canary", "status"], ["journal"], ["journal", "verify"], ["journal", "show"]):
        result = cli(*args, "--help")
        assert result.exit_code == 0 and "Example" in result.output, args


def test_activate_status_rollback_exit_codes(root: Root, cli: Callable[..., Result],
                                             patch_default_gate: FakeGate) -> None:
    result = cli("canary", "activate", "--model", "patchtst")
    assert result.exit_code == 0, result.output + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("CANARY ACTIVATED: patchtst 10.0%")
    assert "Rollback command:" in result.stdout and "canary rollback" in result.stdout
    assert patch_default_gate.calls[0]["after"] is not None  # --after auto: the unit's ActiveEnterTimestamp
    status = cli("canary", "status", "--json")
    assert status.exit_code == 3
    data = json.loads(status.stdout)
    assert data["status"] == "WAIT" and data["canary"]["model"] == "patchtst"
    # Rollback on a non-terminal without --yes is refused, not silently done.
    refused = cli("canary", "rollback")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    done = cli("canary", "rollback", "--yes", "--reason", "manual test", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["journal_action"] == "rollback_executed"
    again = cli("canary", "rollback", "--yes")
    assert again.exit_code == 0 and again.stdout.startswith("NOTHING TO ROLL BACK")
    assert cli("canary", "status").exit_code == 0


def test_activate_bad_input_exit_2(root: Root, cli: Callable[..., Result]) -> None:
    before = root.snapshot()
    result = cli("canary", "activate", "--model", "patchtst\nExecStart=/bin/sh")
    assert result.exit_code == 2 and result.stdout.startswith("CANARY BLOCKED: invalid model name")
    result = cli("canary", "activate", "--model", "patchtst", "--share", "0.7", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["status"] == "BLOCKED"
    assert root.snapshot() == before


def test_dry_run_prints_the_plan(root: Root, cli: Callable[..., Result]) -> None:
    before = root.snapshot()
    result = cli("canary", "activate", "--model", "patchtst", "--dry-run")
    assert result.exit_code == 0
    assert result.stdout.startswith("CANARY DRY RUN")
    assert "qsc_canary.conf" in result.stdout and "run   systemctl daemon-reload" in result.stdout
    assert '| Environment="QSC_CANARY_MODEL=patchtst"' in result.stdout
    assert root.snapshot() == before


def test_promote_refused_without_monitor(root: Root, cli: Callable[..., Result]) -> None:
    assert cli("canary", "activate", "--model", "patchtst").exit_code == 0
    result = cli("canary", "promote", "--to", "0.25", "--reason", "x")
    assert result.exit_code == 2 and result.stdout.startswith("PROMOTION BLOCKED")
    assert cli("canary", "promote", "--to", "0.3", "--reason", "x").exit_code == 2


def test_journal_verify_and_show(root: Root, cli: Callable[..., Result]) -> None:
    assert cli("canary", "activate", "--model", "patchtst").exit_code == 0
    assert cli("canary", "rollback", "--yes").exit_code == 0
    ok = cli("journal", "verify")
    assert ok.exit_code == 0 and ok.stdout.startswith("JOURNAL OK: 2 record(s)")
    shown = cli("journal", "show", "--action", "rollback_executed", "--json")
    assert [r["action"] for r in json.loads(shown.stdout)["records"]] == ["rollback_executed"]
    settings = root.settings()
    lines = settings.journal_path.read_text().splitlines()
    settings.journal_path.write_text(lines[1] + "\n")
    broken = cli("journal", "verify")
    assert broken.exit_code == 2 and broken.stdout.startswith("JOURNAL BROKEN")
    assert journal.verify_journal(settings).problems
