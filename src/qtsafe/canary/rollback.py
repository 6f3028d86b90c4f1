"""Rollback: restore every live file a canary touched from its verified backup, reload, restart, verify, journal."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qtsafe.canary import envfile, journal
from qtsafe.canary import state as st
from qtsafe.canary.state import CanaryState, TouchedFile
from qtsafe.canary.steps import (
    Confirm,
    Sleep,
    _checkpoint,
    _env_fingerprint,
    _proof,
    _q,
    _read_bytes,
    _sha256_bytes,
    _try_journal,
    _verify_unit,
)
from qtsafe.canary.systemd import Systemd
from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import CanaryStateError, ConfigError, QtsafeError, StateError, WriteError
from qtsafe.fsio import atomic_write_bytes
from qtsafe.results import Result
from qtsafe.status import Status


@dataclasses.dataclass(frozen=True)
class RollbackResult(Result):
    """Outcome of a rollback. PASS: verified (or nothing to roll back); FAIL: the rollback itself failed."""

    trigger: str
    reason: str
    violations: tuple[str, ...] = ()
    canary_id: str | None = None
    canary_model: str | None = None
    nothing_to_do: bool = False
    actions: tuple[str, ...] = ()
    verification: dict[str, Any] = dataclasses.field(default_factory=dict)
    manual_steps: tuple[str, ...] = ()
    journal_action: str | None = None
    restored_backup: str | None = None


def _manual_steps(settings: Settings, state: CanaryState | None) -> tuple[str, ...]:
    steps = []
    for entry in reversed(state.touched if state else ()):
        if entry.backup:
            steps.append(f"sha256sum {_q(entry.backup)}  # expect {entry.backup_sha256}")
            steps.append(f"sudo cp {_q(entry.backup)} {_q(entry.path)}")
        else:
            steps.append(f"sudo rm -f {_q(entry.path)}")
    if not steps:
        steps.append(f"sudo rm -f {_q(st.dropin_path(settings))}")
    systemctl, unit = _q(settings.systemctl), _q(settings.unit)
    steps += [
        f"sudo {systemctl} daemon-reload",
        f"sudo {systemctl} restart {unit}",
        f"{systemctl} is-active {unit}  # expect: active",
        f"{systemctl} show {unit} -p Environment  # expect no {st.MARKER_MODEL}",
        f"rm -f {_q(st.state_path(settings))}  # only after the unit runs the baseline",
    ]
    return tuple(steps)


def _restore_touched(settings: Settings, entry: TouchedFile) -> str:
    """Put one touched live file back to its pre-canary bytes. Returns what was done; raises on failure."""
    path = Path(entry.path)
    current = _read_bytes(path)
    backup = entry.backup
    if backup is None:
        if current is None:
            return f"{path} already absent"
        try:
            path.unlink()
        except OSError as exc:
            raise WriteError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        return f"removed {path}"
    backup_bytes = _read_bytes(Path(backup))
    backup_ok = backup_bytes is not None and _sha256_bytes(backup_bytes) == entry.backup_sha256
    if current is not None and _sha256_bytes(current) == entry.backup_sha256:
        return f"{path} already matches its backup"
    if entry.kind == "env_file" and current is not None and \
            _sha256_bytes(current) != entry.written_sha256:
        # Someone else edited the file since: put back only our line, keeping their edits.
        reverted = envfile.replace_line(current, str(entry.key), str(entry.new_line).encode("utf-8",
                                        "surrogateescape"), str(entry.old_line).encode("utf-8", "surrogateescape"))
        atomic_write_bytes(path, reverted)
        return f"reverted the {entry.key}= line of {path} (the file had other edits, kept)"
    if not backup_ok:
        raise StateError(f"backup {backup} is missing or fails its checksum; cannot restore {path}")
    assert backup_bytes is not None
    atomic_write_bytes(path, backup_bytes)
    return f"restored {path} from {backup} (sha256 verified)"


def _rollback_from_state(
    settings: Settings, state: CanaryState | None, systemd: Systemd, sleep: Sleep, *, trigger: str,
    reason: str, violations: Sequence[str],
) -> RollbackResult:
    """Undo whatever ``state`` records (or an orphan drop-in when there is no state). Caller holds the lock."""
    actions: list[str] = []
    notes: list[str] = []
    model = state.model if state else None
    canary_id = state.canary_id if state else None
    try:
        if state is not None:
            state = state.replace(phase=st.PHASE_ROLLING_BACK, rollback_trigger=trigger, rollback_reason=reason)
            try:
                st.save_state(settings, state)
            except QtsafeError as exc:
                # Best effort: the state on disk already records everything a later rollback needs, and
                # taking the canary out (removing a drop-in) needs no disk space. A full disk must not stop it.
                notes.append(f"could not mark the state rolling back ({exc}); rolling back anyway")
        _checkpoint("rb_started")
        touched = list(state.touched) if state else []
        if not touched:
            touched = [TouchedFile(path=str(st.dropin_path(settings)), kind="dropin", backup=None, backup_sha256=None)]
        for entry in reversed(touched):
            actions.append(_restore_touched(settings, entry))
        for directory in state.created_dirs if state else ():
            try:
                Path(directory).rmdir()
                actions.append(f"removed empty {directory}")
            except OSError:
                pass  # not empty (someone else's drop-in) or already gone: leave it
        for local in (st.local_dropin_path(settings), st.canary_weights_path(settings)):
            if local.exists():
                local.unlink()
                actions.append(f"removed {local}")
        _checkpoint("rb_files_restored")
        needs_reload = any(e.kind != "env_file" for e in touched)
        if needs_reload:
            systemd.daemon_reload()
            actions.append("daemon-reload")
        _checkpoint("rb_daemon_reloaded")
        systemd.restart()
        actions.append(f"restart {settings.unit}")
        _checkpoint("rb_restarted")
        verification = _verify_unit(systemd, settings, sleep, expect_env=_expect_baseline(settings, state))
        _checkpoint("rb_verified")
    except (QtsafeError, OSError) as exc:
        manual = _manual_steps(settings, state)
        if state is not None:
            try:
                st.save_state(settings, state.replace(phase=st.PHASE_ROLLING_BACK, last_error=str(exc)))
            except QtsafeError as save_exc:
                notes.append(f"could not update the state file: {save_exc}")
        _try_journal(settings, "rollback_failed", notes, canary_id=canary_id, canary_model=model, unit=settings.unit,
                     trigger=trigger, reason=reason, violations=list(violations), error=str(exc),
                     actions=actions, manual_steps=list(manual))
        return RollbackResult(
            status=Status.FAIL, summary=f"ROLLBACK FAILED: {exc}", trigger=trigger, reason=reason,
            violations=tuple(violations), canary_id=canary_id, canary_model=model, actions=tuple(actions + notes),
            manual_steps=manual, journal_action="rollback_failed")
    git, proof, proof_notes = _proof(systemd)
    verification.update({"git_hash": git, "journal_proof": proof, "notes": proof_notes})
    try:
        journal.append_record(
            settings, "rollback_executed", canary_id=canary_id, canary_model=model, unit=settings.unit,
            trigger=trigger, reason=reason, violations=list(violations), actions=actions,
            baseline_weights=state.baseline_weights if state else None, stage=state.share if state else None,
            git_hash=git, journal_proof=proof)
    except QtsafeError as exc:
        # The live system is back on the baseline; keep the state so the missing record is visible.
        return RollbackResult(
            status=Status.FAIL, summary=f"ROLLBACK DONE BUT NOT JOURNALED: {exc}", trigger=trigger, reason=reason,
            violations=tuple(violations), canary_id=canary_id, canary_model=model, actions=tuple(actions),
            verification=verification, manual_steps=(f"rm -f {_q(st.state_path(settings))}",),
            journal_action=None)
    _checkpoint("rb_journaled")
    st.clear_state(settings)
    return RollbackResult(
        status=Status.PASS, summary=f"ROLLBACK VERIFIED: {settings.unit} runs the baseline"
        + (f" ({model} removed)" if model else ""), trigger=trigger, reason=reason, violations=tuple(violations),
        canary_id=canary_id, canary_model=model, actions=tuple(actions), verification=verification,
        journal_action="rollback_executed")


def _expect_baseline(settings: Settings, state: CanaryState | None) -> Callable[[dict[str, str]], list[str]]:
    def check(env: dict[str, str]) -> list[str]:
        problems = [f"{marker} is still set" for marker in (st.MARKER_MODEL, st.MARKER_WEIGHT) if marker in env]
        expected = state.baseline_environment if state else None
        if expected is not None:
            live = _env_fingerprint(env)
            differ = sorted(name for name in set(live) | set(expected) if live.get(name) != expected.get(name))
            if differ:
                problems.append(f"environment differs from the pre-canary baseline in {', '.join(differ)}")
        for entry in state.touched if state else ():
            if entry.kind == "env_file":
                data = _read_bytes(Path(entry.path)) or b""
                if envfile.key_lines(data, str(entry.key)) and str(entry.old_line).encode(
                        "utf-8", "surrogateescape") not in data.splitlines(keepends=True):
                    problems.append(f"{entry.path} does not hold the original {entry.key}= line")
        return problems

    return check


def _refuse_unit(settings: Settings, trigger: str, reason: str, violations: Sequence[str]) -> RollbackResult | None:
    """A rollback for a unit name systemd would not accept changes nothing and prints no command built from it."""
    try:
        check_unit_name(settings.unit)
    except ConfigError as exc:
        return RollbackResult(status=Status.BLOCKED, summary=f"ROLLBACK REFUSED: {exc} (nothing changed)",
                              trigger=trigger, reason=reason, violations=tuple(violations))
    return None


def rollback(
    settings: Settings,
    *,
    trigger: str = "manual",
    violations: Sequence[str] = (),
    reason: str = "",
    confirm: Confirm | None = None,
    systemd: Systemd | None = None,
    sleep: Sleep = time.sleep,
) -> RollbackResult:
    """Roll the canary back to the recorded baseline and verify it. Idempotent; needs no Redis.

    Callable in-process by the monitor (``trigger="qsc_monitor_violation"``, ``violations=[...]``).
    With nothing to roll back it returns PASS with ``nothing_to_do``. ``confirm`` (CLI on a terminal) gets
    the plan text and may decline, which changes nothing (BLOCKED).
    """
    systemd = systemd or Systemd(settings)
    violations = tuple(violations)
    refused = _refuse_unit(settings, trigger, reason, violations)
    if refused is not None:
        return refused
    try:
        with st.unit_lock(settings):
            state = st.read_state(settings)
            orphan = state is None and st.dropin_path(settings).exists()
            if state is None and not orphan:
                return RollbackResult(
                    status=Status.PASS, summary=f"NOTHING TO ROLL BACK: no canary on {settings.unit}",
                    trigger=trigger, reason=reason, violations=violations, nothing_to_do=True)
            if confirm is not None and not confirm(_describe_rollback(settings, state)):
                return RollbackResult(status=Status.BLOCKED, summary="ROLLBACK NOT CONFIRMED: nothing changed",
                                      trigger=trigger, reason=reason, violations=violations)
            return _rollback_from_state(settings, state, systemd, sleep, trigger=trigger, reason=reason,
                                        violations=violations)
    except CanaryStateError as exc:
        if st.state_path(settings).exists():
            return _corrupt_state_rollback(settings, systemd, sleep, trigger, reason, violations, exc)
        return RollbackResult(status=Status.FAIL, summary=f"ROLLBACK FAILED: {exc}", trigger=trigger, reason=reason,
                              violations=violations, manual_steps=_manual_steps(settings, None))
    except QtsafeError as exc:
        return RollbackResult(status=Status.FAIL, summary=f"ROLLBACK FAILED: {exc}", trigger=trigger, reason=reason,
                              violations=violations, manual_steps=_manual_steps(settings, None))


def _corrupt_state_rollback(settings: Settings, systemd: Systemd, sleep: Sleep, trigger: str, reason: str,
                            violations: Sequence[str], exc: Exception) -> RollbackResult:
    """An unreadable state file: remove the drop-in (the one live change we can undo without it)."""
    with st.unit_lock(settings):
        result = _rollback_from_state(settings, None, systemd, sleep, trigger=trigger,
                                      reason=f"{reason} (state file unreadable: {exc})".strip(), violations=violations)
        if result.status is Status.PASS:
            st.clear_state(settings)
        return result


def _describe_rollback(settings: Settings, state: CanaryState | None) -> str:
    if state is None:
        return (f"Roll back {settings.unit}: remove the unrecorded drop-in {st.dropin_path(settings)}, "
                "daemon-reload, restart, verify.")
    lines = [f"Roll back canary {state.canary_id} ({state.model}, phase {state.phase}) on {settings.unit}:"]
    for entry in reversed(state.touched):
        lines.append(f"  restore {entry.path} " + (f"from {entry.backup}" if entry.backup else "(remove)"))
    lines.append("  daemon-reload, restart, verify the unit is active on the baseline")
    return "\n".join(lines)

