"""journal repair: a torn last line is cut and kept aside; a tampered journal is not 'repaired'."""

from __future__ import annotations

import json

from qtsafe.canary import journal
from qtsafe.status import Status
from tests.canary.conftest import Root, run_qtsafe


def test_torn_tail_blocks_appends_until_repaired(root: Root) -> None:
    settings = root.settings()
    journal.append_record(settings, "canary_activated", canary_id="c1", canary_model="patchtst")
    whole = root.journal.read_bytes()
    root.journal.write_bytes(whole + b'{"action": "rollback_exec')  # a crash mid-append
    blocked = run_qtsafe(root, "journal", "verify")
    assert blocked.returncode == 2
    repaired = run_qtsafe(root, "journal", "repair", "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    data = json.loads(repaired.stdout)
    assert data["removed_bytes"] == len(b'{"action": "rollback_exec')
    assert (root.journal.parent / data["kept_copy"].rsplit("/", 1)[-1]).read_bytes() == b'{"action": "rollback_exec'
    assert root.journal.read_bytes().startswith(whole)
    assert root.actions() == ["canary_activated", "journal_repaired"]
    assert journal.verify_journal(settings).status is Status.PASS
    again = run_qtsafe(root, "journal", "repair")
    assert again.returncode == 0 and again.stdout.startswith("NOTHING TO REPAIR")


def test_tampered_journal_is_not_repaired(root: Root) -> None:
    settings = root.settings()
    journal.append_record(settings, "canary_activated", canary_id="c1", canary_model="patchtst")
    journal.append_record(settings, "rollback_executed", canary_id="c1", canary_model="patchtst")
    lines = root.journal.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b"patchtst", b"xgboost")
    root.journal.write_bytes(b"".join(lines) + b'{"torn')
    result = journal.repair_journal(settings)
    assert result.status is Status.FAIL and result.summary.startswith("REPAIR INCOMPLETE")
    assert root.actions() == ["canary_activated", "rollback_executed"]  # nothing appended to a broken chain
