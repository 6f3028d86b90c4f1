"""``canary activate``: back up, write the drop-in or env line, reload, restart, verify, journal; undo on failure."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qtsafe.canary import journal
from qtsafe.canary import state as st
from qtsafe.canary.preflight import _prepare_activation, _Prepared
from qtsafe.canary.rollback import RollbackResult
from qtsafe.canary.sink import LiveSink, RecordingSink
from qtsafe.canary.state import CanaryState, TouchedFile
from qtsafe.canary.steps import (
    Sleep,
    _env_fingerprint,
    _expect_env_file,
    _expect_weights,
    _read_bytes,
    _sha256_bytes,
    _try_journal,
    _weights_file_text,
    _writability_problems,
    rollback_command,
)
from qtsafe.canary.systemd import Systemd
from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import QtsafeError, WriteError
from qtsafe.results import Result
from qtsafe.status import Status
from qtsafe.timeutil import iso, iso_ms, utc_now


@dataclasses.dataclass(frozen=True)
class ActivationResult(Result):
    """Outcome of ``canary activate`` (or its dry run). PASS only for a verified activation or a clean plan."""

    mode: str
    model: str
    dry_run: bool
    unit: str
    share: float | None = None
    env_key: str | None = None
    canary_id: str | None = None
    problems: tuple[str, ...] = ()
    baseline_weights: dict[str, float] | None = None
    baseline_source: str | None = None
    canary_weights: dict[str, float] | None = None
    gate_summary: str | None = None
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    backups: tuple[dict[str, Any], ...] = ()
    verification: dict[str, Any] = dataclasses.field(default_factory=dict)
    rollback_command: str | None = None
    rollback: RollbackResult | None = None


def _refused(mode: str, model: str, settings: Settings, dry_run: bool, problems: Sequence[str], **extra: Any
             ) -> ActivationResult:
    first = problems[0] if problems else "refused"
    return ActivationResult(
        status=Status.BLOCKED, summary=f"CANARY BLOCKED: {first} (nothing changed)", mode=mode, model=model,
        dry_run=dry_run, unit=settings.unit, problems=tuple(problems), **extra,
    )


def activate(
    settings: Settings,
    *,
    model: str,
    share: float | None = None,
    env_key: str | None = None,
    env_value: str | None = None,
    after: Any = None,
    dry_run: bool = False,
    gate: Callable[..., Any] | None = None,
    open_source: Callable[..., Any] | None = None,
    systemd: Systemd | None = None,
    sleep: Sleep = time.sleep,
) -> ActivationResult:
    """Activate a canary for ``model``: preflight, back up, apply, verify; roll back by itself on failure.

    Drop-in mode (default) gives ``model`` ``share`` (default ``settings.canary.share``) of the ensemble
    through ``<unit>.d/qsc_canary.conf``; env-key mode (``env_key``/``env_value``) edits one line of the
    env file. ``dry_run`` runs the preflight (including the gate, without writing its report), then the
    same executor against a recording sink, and returns its log as the plan; it changes nothing.
    """
    systemd = systemd or Systemd(settings)
    share = settings.canary.share if share is None else share
    mode = "env_key" if env_key is not None else "dropin"
    try:
        check_unit_name(settings.unit)  # before any path or command is built from it, dry run included
        if dry_run:
            prep = _prepare_activation(
                settings, model=model, share=share, env_key=env_key, env_value=env_value, after=after,
                systemd=systemd, gate=gate, open_source=open_source, write_report=False)
            recorder = RecordingSink(settings)
            rehearsal = _execute_activation(settings, prep, recorder)
            if rehearsal.status is not Status.PASS:
                return dataclasses.replace(rehearsal, dry_run=True, plan=recorder.plan())
            return ActivationResult(
                status=Status.PASS, summary=f"CANARY DRY RUN: {model} would be activated on {settings.unit} "
                "(preflight passed; nothing changed)", mode=mode, model=model, dry_run=True, unit=settings.unit,
                share=prep.share, env_key=env_key, baseline_weights=prep.baseline,
                baseline_source=prep.baseline_source, canary_weights=prep.weights, gate_summary=prep.gate_summary,
                plan=recorder.plan(), rollback_command=rollback_command(settings))
        # Writability first so an unwritable lock directory is reported as such, not as a lock error.
        problems = _writability_problems(settings, [st.lock_path(settings).parent])
        if problems:
            raise WriteError("; ".join(problems))
        with st.unit_lock(settings):
            prep = _prepare_activation(
                settings, model=model, share=share, env_key=env_key, env_value=env_value, after=after,
                systemd=systemd, gate=gate, open_source=open_source, write_report=True)
            return _execute_activation(settings, prep, LiveSink(settings, systemd, sleep))
    except QtsafeError as exc:
        return _refused(mode, model, settings, dry_run, [str(exc)], env_key=env_key,
                        share=share if mode == "dropin" else None)


def _execute_activation(settings: Settings, prep: _Prepared, sink: RecordingSink) -> ActivationResult:
    """Apply ``prep`` through ``sink``: every side effect is a sink step, so a recorder's log is the plan."""
    backups, undo = _write_activation_backups(settings, prep, sink)
    sink.checkpoint("backed_up")
    touched: list[TouchedFile] = []
    created_dirs: list[str] = []
    if prep.mode == "dropin":
        touched.append(TouchedFile(path=str(st.dropin_path(settings)), kind="dropin", backup=None,
                                   backup_sha256=None,
                                   written_sha256=_sha256_bytes((prep.dropin_text or "").encode())))
        if not st.dropin_dir(settings).exists():
            created_dirs.append(str(st.dropin_dir(settings)))
    else:
        env_backup = next(b for b in backups if b["of"] == str(settings.env_file))
        touched.append(TouchedFile(
            path=str(settings.env_file), kind="env_file", backup=env_backup["path"],
            backup_sha256=env_backup["sha256"], written_sha256=_sha256_bytes(prep.env_new or b""),
            key=prep.env_key, old_line=(prep.env_old_line or b"").decode("utf-8", "surrogateescape"),
            new_line=(prep.env_new_line or b"").decode("utf-8", "surrogateescape")))
    state = CanaryState(
        phase=st.PHASE_APPLYING, step="backed_up", canary_id=prep.canary_id, mode=prep.mode,
        unit=settings.unit, model=prep.model, share=prep.share, stages=(),
        env_key=prep.env_key, baseline_weights=prep.baseline, baseline_source=prep.baseline_source,
        canary_weights=prep.weights, baseline_environment=_env_fingerprint(prep.env),
        started_at=str(iso(utc_now())), activated_at=None, pid=os.getpid(),
        operator=journal.operator_name(), touched=tuple(touched), created_dirs=tuple(created_dirs),
        backups=tuple(backups), cutover_ts=prep.cutover, gate_summary=prep.gate_summary,
        dropin_sha256=touched[0].written_sha256 if prep.mode == "dropin" else None,
    )
    try:
        sink.save_state(state)
    except QtsafeError as exc:
        undo()
        return _refused(prep.mode, prep.model, settings, False, [str(exc)])
    sink.checkpoint("state_written")
    notes: list[str] = []
    try:
        if prep.mode == "dropin":
            assert prep.dropin_text is not None and prep.weights is not None
            dropin = prep.dropin_text.encode("utf-8")
            sink.write_file(st.dropin_path(settings), dropin, mode=0o644, purpose="systemd drop-in (live)")
            sink.write_file(st.local_dropin_path(settings), dropin, mode=0o644, purpose="local copy of the drop-in")
            sink.write_file(st.canary_weights_path(settings), _weights_file_text(prep.weights).encode("utf-8"),
                            purpose="canary weights")
        else:
            sink.write_file(settings.env_file, prep.env_new or b"", purpose=f"anchored edit of {prep.env_key}=",
                            shown=False, edit=(_line(prep.env_old_line), _line(prep.env_new_line)))
        state = state.replace(step="dropin_written")
        sink.save_state(state)
        sink.checkpoint("dropin_written")
        if prep.mode == "dropin":
            sink.daemon_reload()
        sink.checkpoint("daemon_reloaded")
        sink.restart()
        sink.checkpoint("restarted")
        if prep.mode == "dropin":
            assert prep.weights is not None
            expect = _expect_weights(settings, prep.weights, prep.model, prep.share)
        else:
            expect = _expect_env_file(settings, prep.env_new or b"")
        verification = sink.verify(expect)
        sink.checkpoint("verified")
    except QtsafeError as exc:
        failure = f"activation failed at step after {state.step}: {exc}"
        _try_journal(settings, "canary_activation_failed", notes, append=sink.journal, canary_id=prep.canary_id,
                     canary_model=prep.model, unit=settings.unit, error=str(exc), backups=backups)
        rb = sink.roll_back(state, reason=failure, violations=[str(exc)])
        outcome = "rolled back and verified" if rb.status is Status.PASS else "ROLLBACK FAILED"
        return ActivationResult(
            status=Status.FAIL, summary=f"CANARY FAILED: {exc} ({outcome})", mode=prep.mode, model=prep.model,
            dry_run=False, unit=settings.unit, share=prep.share, env_key=prep.env_key, canary_id=prep.canary_id,
            problems=(str(exc), *notes), baseline_weights=prep.baseline, baseline_source=prep.baseline_source,
            canary_weights=prep.weights, gate_summary=prep.gate_summary, plan=sink.plan(), backups=tuple(backups),
            rollback=rb, rollback_command=rollback_command(settings))
    git, proof_lines, proof_notes = sink.proof()
    verification.update({"git_hash": git, "journal_proof": proof_lines, "notes": proof_notes})
    # Milliseconds, not seconds: the monitor's window starts at this stream time, and an event from the same
    # second before the activation is not the canary's.
    activated_at = iso_ms(utc_now())
    cmd = rollback_command(settings)
    record = dict(
        canary_id=prep.canary_id, unit=settings.unit, mode=prep.mode, canary_model=prep.model,
        canary_weight=prep.share, weights=prep.weights, baseline_weights=prep.baseline,
        baseline_source=prep.baseline_source, env_key=prep.env_key, stage=prep.share,
        cutover_ts=prep.cutover, quality_gate_events=prep.gate_events, gate_summary=prep.gate_summary,
        monitoring_duration_hours=settings.monitor.duration / 3600.0, rollback_cmd=cmd, backups=backups,
        dropin=({"path": str(st.dropin_path(settings)), "sha256": touched[0].written_sha256}
                if prep.mode == "dropin" else None),
        env_file=({"path": str(settings.env_file), "sha256": touched[0].written_sha256,
                   "old_line": str(touched[0].old_line).rstrip("\r\n"),
                   "new_line": str(touched[0].new_line).rstrip("\r\n")}
                  if prep.mode == "env_key" else None),
        git_hash=git, journal_proof=proof_lines, loosened_thresholds=settings.loosened(), activated_at=activated_at,
    )
    try:
        sink.journal("canary_activated", **record)
    except QtsafeError as exc:
        # An activation nobody can audit is not an activation: undo it.
        rb = sink.roll_back(state, reason=f"journal append failed: {exc}", violations=[str(exc)])
        return ActivationResult(
            status=Status.FAIL, summary=f"CANARY FAILED: cannot journal the activation: {exc}", mode=prep.mode,
            model=prep.model, dry_run=False, unit=settings.unit, share=prep.share, env_key=prep.env_key,
            canary_id=prep.canary_id, problems=(str(exc),), plan=sink.plan(), backups=tuple(backups), rollback=rb)
    sink.checkpoint("journaled")
    applying = state
    state = state.replace(phase=st.PHASE_ACTIVE, step="journaled", activated_at=activated_at,
                          stages=({"share": prep.share, "at": activated_at},), git_hash=git)
    try:
        sink.save_state(state)
    except QtsafeError as exc:
        # The canary is live and journaled but its state cannot say so: nothing would monitor it. Undo it.
        rb = sink.roll_back(applying, reason=f"state write failed: {exc}", violations=[str(exc)])
        outcome = "rolled back and verified" if rb.status is Status.PASS else "ROLLBACK FAILED"
        return ActivationResult(
            status=Status.FAIL, summary=f"CANARY FAILED: cannot record the active canary: {exc} ({outcome})",
            mode=prep.mode, model=prep.model, dry_run=False, unit=settings.unit, share=prep.share,
            env_key=prep.env_key, canary_id=prep.canary_id, problems=(str(exc),), plan=sink.plan(),
            backups=tuple(backups), rollback=rb, rollback_command=cmd)
    what = f"{prep.model} {prep.share:.1%}" if prep.mode == "dropin" else f"{prep.env_key} for {prep.model}"
    return ActivationResult(
        status=Status.PASS, summary=f"CANARY ACTIVATED: {what} on {settings.unit} (verified)", mode=prep.mode,
        model=prep.model, dry_run=False, unit=settings.unit, share=prep.share, env_key=prep.env_key,
        canary_id=prep.canary_id, problems=tuple(proof_notes), baseline_weights=prep.baseline,
        baseline_source=prep.baseline_source, canary_weights=prep.weights, gate_summary=prep.gate_summary,
        plan=sink.plan(), backups=tuple(backups), verification=verification, rollback_command=cmd)

def _write_activation_backups(settings: Settings, prep: _Prepared, sink: RecordingSink
                              ) -> tuple[list[dict[str, Any]], Callable[[], None]]:
    """Write every backup; on failure remove what this call wrote (restoring an older baseline file) and raise."""
    written: list[Path] = []
    baseline_path = st.baseline_weights_path(settings)
    old_baseline = _read_bytes(baseline_path)
    replaced_baseline = False

    def undo() -> None:
        for path in reversed(written):
            with contextlib.suppress(QtsafeError):
                sink.remove(path, purpose="undo a backup of a failed activation")
        if replaced_baseline and old_baseline is not None:
            with contextlib.suppress(QtsafeError):
                sink.write_file(baseline_path, old_baseline, purpose="restore the older baseline weights file")

    backups: list[dict[str, Any]] = []
    try:
        if prep.mode == "dropin":
            assert prep.baseline is not None
            text = _weights_file_text(prep.baseline).encode("utf-8")
            if old_baseline != text:
                # Safe to replace: no canary is active (checked under the lock), so this is not a canary's baseline.
                sink.write_file(baseline_path, text, purpose="baseline weights backup")
                replaced_baseline = True
                if old_baseline is None:
                    written.append(baseline_path)
            backups.append({"of": "baseline_weights", "path": str(baseline_path), "sha256": _sha256_bytes(text)})
            copy = sink.backup(settings.backup_dir, "baseline_model_weights", ".json", text,
                               purpose="timestamped baseline copy", shown=True)
            backups.append({"of": "baseline_weights", **copy})
            written.append(Path(copy["path"]))
            for name, data in prep.existing_dropins.items():
                made = sink.backup(settings.backup_dir, f"{settings.unit}.d_{name}", ".bak", data,
                                   purpose=f"backup of drop-in {name}")
                backups.append({"of": str(st.dropin_dir(settings) / name), **made})
                written.append(Path(made["path"]))
        if prep.env_bytes is not None:
            purpose = "env file backup" + (" (unchanged by a drop-in canary)" if prep.mode == "dropin" else "")
            made = sink.backup(settings.backup_dir, settings.env_file.name, ".bak", prep.env_bytes, purpose=purpose)
            backups.append({"of": str(settings.env_file), **made})
            written.append(Path(made["path"]))
    except QtsafeError:
        undo()
        raise
    return backups, undo



def _line(raw: bytes | None) -> str:
    """An env-file line as the plan shows it: text, without its line ending."""
    return (raw or b"").decode("utf-8", "replace").rstrip("\r\n")
