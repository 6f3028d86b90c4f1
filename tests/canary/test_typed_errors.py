"""Errors are told apart by type, not by their text: a path that happens to read "canary state" changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qtsafe.canary import rollback as canary_rollback
from qtsafe.canary import state as st
from qtsafe.canary import status as canary_status
from qtsafe.errors import CanaryStateError, LockHeldError
from qtsafe.fsio import locked
from qtsafe.status import Status
from tests.canary.conftest import FakeGate, Root
from tests.canary.test_activate import activate


def test_a_held_lock_in_a_folder_named_canary_state_is_a_failed_rollback_not_a_corrupt_state(
        root: Root, gate: FakeGate, no_sleep: Callable[[float], None]) -> None:
    lock_dir = root.path / "canary state"
    assert activate(root, gate, settings={"canary.lock_dir": str(lock_dir)}).status is Status.PASS
    settings = root.settings(**{"canary.lock_dir": str(lock_dir)})
    before = root.snapshot()
    with locked(st.lock_path(settings), blocking=False):  # another qtsafe process holds the unit
        result = canary_rollback.rollback(settings, reason="x", sleep=no_sleep)
    assert result.status is Status.FAIL
    assert result.summary.startswith("ROLLBACK FAILED: another qtsafe canary command is running for ")
    assert root.snapshot() == before  # the canary stays, untouched: nothing was rolled back half-way


def test_the_lock_and_the_state_file_raise_their_own_types(root: Root, gate: FakeGate) -> None:
    settings = root.settings()
    with locked(st.lock_path(settings), blocking=False), pytest.raises(LockHeldError), st.unit_lock(settings):
        pass
    root.state_file.write_text("{torn")
    with pytest.raises(CanaryStateError, match="is not valid JSON"):
        st.load_state(settings)


def test_an_unreadable_journal_under_a_canary_state_folder_is_not_an_unreadable_state(root: Root) -> None:
    # No canary, no drop-in; only the journal is unreadable, and its path happens to contain "canary state".
    settings = root.settings(base_dir=str(root.path / "canary state"))
    settings.journal_path.parent.mkdir(parents=True)
    settings.journal_path.write_text('{"action": "canary_activated"}\n{torn')
    result = canary_status.canary_status(settings)
    assert result.status is Status.WAIT, result.summary
    assert result.summary.startswith("NO CANARY RECORDED, but journal unreadable: ")
