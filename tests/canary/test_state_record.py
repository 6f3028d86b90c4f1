"""Issue 11 item 2: the canary state is a typed record that reads what the dict-based code wrote, writes it
back byte for byte (unknown keys included), and names the field of a malformed file in one line."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from qtsafe.canary import state as st
from qtsafe.canary.state import CanaryState, TouchedFile
from qtsafe.errors import CanaryStateError
from qtsafe.fsio import atomic_write_json
from qtsafe.status import Status
from tests.canary.conftest import DATA, Root, run_qtsafe

OLD_FILES = sorted(p.name for p in DATA.glob("state_v1_*.json"))


def _place(root: Root, name: str, edit: Any = None) -> bytes:
    """Put an old-code state file where qtsafe reads it (optionally edited as JSON); return its bytes."""
    if edit is None:
        shutil.copy(DATA / name, root.state_file)
    else:
        data = json.loads((DATA / name).read_text())
        edit(data)
        root.state_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return root.state_file.read_bytes()


def test_the_fixtures_cover_both_modes_and_a_rollback() -> None:
    assert OLD_FILES == ["state_v1_active_dropin.json", "state_v1_active_env_key.json",
                         "state_v1_rolling_back.json"]


@pytest.mark.parametrize("name", OLD_FILES)
def test_a_state_written_by_the_old_code_is_written_back_byte_identically(root: Root, name: str) -> None:
    original = _place(root, name)
    state = st.read_state(root.settings())
    assert isinstance(state, CanaryState) and all(isinstance(t, TouchedFile) for t in state.touched)
    atomic_write_json(root.state_file, state.to_dict())  # the writer save_state uses
    assert root.state_file.read_bytes() == original
    # The monitor's dict view is the file's JSON, unchanged.
    assert st.load_state(root.settings()) == json.loads(original)


def test_typed_fields_read_the_old_files() -> None:
    from tests.canary.conftest import old_state

    env = old_state("state_v1_active_env_key.json")
    assert (env.mode, env.share, env.phase, env.touched[0].kind) == ("env_key", None, "active", "env_file")
    assert env.touched[0].key == "PATCHTST_SHADOW_ONLY" and env.touched[0].old_line == "PATCHTST_SHADOW_ONLY=true\n"
    rolled = old_state("state_v1_rolling_back.json")
    assert (rolled.rollback_trigger, rolled.rollback_reason) == ("manual", "old-code fixture")
    assert rolled.last_error and "restart" in rolled.last_error
    active = old_state("state_v1_active_dropin.json")
    # Carried as null, written as null; never carried, never written.
    assert active.git_hash is None and "git_hash" in active.to_dict() and "last_error" not in active.to_dict()


def test_unknown_keys_survive_a_save(root: Root) -> None:
    def future(data: dict[str, Any]) -> None:
        data["written_by_a_newer_qtsafe"] = {"x": [1, 2]}
        data["touched"][0]["mtime_ns"] = 123

    original = _place(root, "state_v1_active_dropin.json", future)
    state = st.read_state(root.settings())
    assert state is not None and state.extra == {"written_by_a_newer_qtsafe": {"x": [1, 2]}}
    atomic_write_json(root.state_file, state.to_dict())
    assert root.state_file.read_bytes() == original
    # A lifecycle step's save keeps them too (only version and updated_at are stamped).
    st.save_state(root.settings(), state.replace(phase=st.PHASE_ROLLING_BACK, last_error="boom"))
    saved = json.loads(root.state_file.read_text())
    assert saved["written_by_a_newer_qtsafe"] == {"x": [1, 2]} and saved["touched"][0]["mtime_ns"] == 123
    assert saved["phase"] == "rolling_back" and saved["last_error"] == "boom"


def _drop(key: str) -> Any:
    return lambda data: data.pop(key)


def _set(key: str, value: Any) -> Any:
    return lambda data: data.__setitem__(key, value)


def _touched(key: str, value: Any) -> Any:
    return lambda data: data["touched"][0].__setitem__(key, value)


@pytest.mark.parametrize(("edit", "field", "says"), [
    (_drop("model"), "model", "is missing"),
    (_drop("touched"), "touched", "is missing"),
    (_drop("canary_id"), "canary_id", "is missing"),
    (_set("share", "0.1"), "share", "must be a number or null, not str"),
    (_set("share", True), "share", "must be a number or null, not bool"),
    (_set("touched", {"path": "x"}), "touched", "must be a list, not dict"),
    (_set("touched", ["x"]), "touched", "must be a list of objects"),
    (_set("pid", "8061"), "pid", "must be an integer, not str"),
    (_set("model", None), "model", "must be a string, not null"),
    (_set("canary_weights", {"xgb": "0.3"}), "canary_weights", "must map model names to numbers"),
    (_set("created_dirs", [1]), "created_dirs", "must be a list of paths"),
    (_touched("path", 3), "path", "must be a string, not int"),
    (_touched("kind", None), "kind", "must be a string, not null"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_malformed_state_is_a_canary_state_error_naming_the_field(root: Root, edit: Any, field: str,
                                                                    says: str) -> None:
    _place(root, "state_v1_active_dropin.json", edit)
    for read in (st.read_state, st.load_state):  # the monitor's dict view is checked the same way
        with pytest.raises(CanaryStateError) as caught:
            read(root.settings())
        message = str(caught.value)
        assert f"field '{field}' {says}" in message and "\n" not in message
        assert str(root.state_file) in message


def test_status_and_cli_report_a_malformed_state_in_one_line(root: Root) -> None:
    from qtsafe.canary.status import canary_status

    _place(root, "state_v1_active_dropin.json", _set("share", "0.1"))
    result = canary_status(root.settings())
    assert result.status is Status.FAIL and "field 'share'" in result.summary
    proc = run_qtsafe(root, "canary", "status")
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith("CANARY STATE INCONSISTENT: canary state ")
    assert "field 'share' must be a number or null, not str" in proc.stdout.splitlines()[0]


def test_rollback_repairs_a_malformed_state_by_removing_the_dropin(root: Root) -> None:
    from qtsafe.canary.rollback import rollback

    _place(root, "state_v1_active_dropin.json", _drop("touched"))
    result = rollback(root.settings(), sleep=lambda s: None)
    assert result.status is Status.PASS and "field 'touched' is missing" in result.reason
    assert not root.state_file.exists()

