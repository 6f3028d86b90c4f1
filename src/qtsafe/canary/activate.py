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
from qtsafe.canary.rollback import RollbackResult, _rollback_from_state
from qtsafe.canary.steps import (
    JOURNAL_PROOF_LINES,
    Sleep,
    _checkpoint,
    _env_fingerprint,
    _expect_env_file,
    _expect_weights,
    _proof,
    _read_bytes,
    _sha256_bytes,
    _try_journal,
    _unique_backup,
    _verify_unit,
    _weights_file_text,
    _writability_problems,
    _write_backup,
    rollback_command,
)
from qtsafe.canary.systemd import Systemd
from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import QtsafeError, WriteError
from qtsafe.fsio import atomic_write_bytes, atomic_write_text
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


def _plan(settings: Settings, prep: _Prepared) -> dict[str, Any]:
    """The full plan: files with contents, commands. Shown by --dry-run; the executor follows the same data."""
    files: list[dict[str, Any]] = []
    if prep.mode == "dropin":
        assert prep.weights is not None and prep.baseline is not None and prep.dropin_text is not None
        files += [
            {"path": str(st.baseline_weights_path(settings)), "purpose": "baseline weights backup",
             "content": _weights_file_text(prep.baseline)},
            {"path": str(settings.backup_dir / "baseline_model_weights.<UTC stamp>.json"),
             "purpose": "timestamped baseline copy", "content": _weights_file_text(prep.baseline)},
        ]
        if prep.env_bytes is not None:
            files.append({"path": str(settings.backup_dir / f"{settings.env_file.name}.<UTC stamp>.bak"),
                          "purpose": "env file backup (unchanged by a drop-in canary)", "content": None})
        for name in prep.existing_dropins:
            files.append({"path": str(settings.backup_dir / f"{settings.unit}.d_{name}.<UTC stamp>.bak"),
                          "purpose": f"backup of drop-in {name}", "content": None})
        files += [
            {"path": str(st.dropin_path(settings)), "purpose": "systemd drop-in (live)", "content": prep.dropin_text},
            {"path": str(st.local_dropin_path(settings)), "purpose": "local copy of the drop-in",
             "content": prep.dropin_text},
            {"path": str(st.canary_weights_path(settings)), "purpose": "canary weights",
             "content": _weights_file_text(prep.weights)},
        ]
    else:
        files += [
            {"path": str(settings.backup_dir / f"{settings.env_file.name}.<UTC stamp>.bak"),
             "purpose": "env file backup", "content": None},
            {"path": str(settings.env_file), "purpose": f"anchored edit of {prep.env_key}=",
             "content": None, "old_line": (prep.env_old_line or b"").decode("utf-8", "replace").rstrip("\r\n"),
             "new_line": (prep.env_new_line or b"").decode("utf-8", "replace").rstrip("\r\n")},
        ]
    files.append({"path": str(st.state_path(settings)), "purpose": "canary state", "content": None})
    files.append({"path": str(settings.journal_path), "purpose": "journal record canary_activated", "content": None})
    commands = []
    if prep.mode == "dropin":
        commands.append([settings.systemctl, "daemon-reload"])
    commands += [
        [settings.systemctl, "restart", settings.unit],
        [settings.systemctl, "is-active", settings.unit],
        [settings.systemctl, "is-active", settings.unit],
        [settings.systemctl, "show", settings.unit, "-p", "Environment"],
        [settings.journalctl, "-u", settings.unit, "-n", str(JOURNAL_PROOF_LINES), "--no-pager"],
    ]
    return {"files": files, "commands": commands,
            "settle_seconds": settings.canary.settle_seconds, "recheck_seconds": settings.canary.recheck_seconds,
            "on_failure": "automatic rollback to the backups, verified and journaled"}


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
    env file. ``dry_run`` runs the preflight (including the gate, without writing its report) and returns
    the plan; it changes nothing.
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
            return ActivationResult(
                status=Status.PASS, summary=f"CANARY DRY RUN: {model} would be activated on {settings.unit} "
                "(preflight passed; nothing changed)", mode=mode, model=model, dry_run=True, unit=settings.unit,
                share=prep.share, env_key=env_key, baseline_weights=prep.baseline,
                baseline_source=prep.baseline_source, canary_weights=prep.weights, gate_summary=prep.gate_summary,
                plan=_plan(settings, prep), rollback_command=rollback_command(settings))
        # Writability first so an unwritable lock directory is reported as such, not as a lock error.
        problems = _writability_problems(settings, [st.lock_path(settings).parent])
        if problems:
            raise WriteError("; ".join(problems))
        with st.unit_lock(settings):
            prep = _prepare_activation(
                settings, model=model, share=share, env_key=env_key, env_value=env_value, after=after,
                systemd=systemd, gate=gate, open_source=open_source, write_report=True)
            return _execute_activation(settings, prep, systemd, sleep)
    except QtsafeError as exc:
        return _refused(mode, model, settings, dry_run, [str(exc)], env_key=env_key,
                        share=share if mode == "dropin" else None)


def _execute_activation(settings: Settings, prep: _Prepared, systemd: Systemd, sleep: Sleep) -> ActivationResult:
    plan = _plan(settings, prep)
    backups, undo = _write_activation_backups(settings, prep)
    _checkpoint("backed_up")
    touched: list[dict[str, Any]] = []
    created_dirs: list[str] = []
    if prep.mode == "dropin":
        touched.append({"path": str(st.dropin_path(settings)), "kind": "dropin", "backup": None,
                        "backup_sha256": None, "written_sha256": _sha256_bytes((prep.dropin_text or "").encode())})
        if not st.dropin_dir(settings).exists():
            created_dirs.append(str(st.dropin_dir(settings)))
    else:
        env_backup = next(b for b in backups if b["of"] == str(settings.env_file))
        touched.append({"path": str(settings.env_file), "kind": "env_file", "backup": env_backup["path"],
                        "backup_sha256": env_backup["sha256"], "written_sha256": _sha256_bytes(prep.env_new or b""),
                        "key": prep.env_key, "old_line": (prep.env_old_line or b"").decode("utf-8", "surrogateescape"),
                        "new_line": (prep.env_new_line or b"").decode("utf-8", "surrogateescape")})
    state: dict[str, Any] = {
        "phase": st.PHASE_APPLYING, "step": "backed_up", "canary_id": prep.canary_id, "mode": prep.mode,
        "unit": settings.unit, "model": prep.model, "share": prep.share, "stages": [],
        "env_key": prep.env_key, "baseline_weights": prep.baseline, "baseline_source": prep.baseline_source,
        "canary_weights": prep.weights, "baseline_environment": _env_fingerprint(prep.env),
        "started_at": iso(utc_now()), "activated_at": None, "pid": os.getpid(),
        "operator": journal.operator_name(), "touched": touched, "created_dirs": created_dirs, "backups": backups,
        "cutover_ts": prep.cutover, "gate_summary": prep.gate_summary,
        "dropin_sha256": touched[0]["written_sha256"] if prep.mode == "dropin" else None,
    }
    try:
        st.save_state(settings, state)
    except QtsafeError as exc:
        undo()
        return _refused(prep.mode, prep.model, settings, False, [str(exc)])
    _checkpoint("state_written")
    notes: list[str] = []
    try:
        if prep.mode == "dropin":
            assert prep.dropin_text is not None and prep.weights is not None
            atomic_write_text(st.dropin_path(settings), prep.dropin_text, mode=0o644)
            atomic_write_text(st.local_dropin_path(settings), prep.dropin_text, mode=0o644)
            atomic_write_text(st.canary_weights_path(settings), _weights_file_text(prep.weights))
        else:
            atomic_write_bytes(settings.env_file, prep.env_new or b"")
        state["step"] = "dropin_written"
        st.save_state(settings, state)
        _checkpoint("dropin_written")
        if prep.mode == "dropin":
            systemd.daemon_reload()
        _checkpoint("daemon_reloaded")
        systemd.restart()
        _checkpoint("restarted")
        if prep.mode == "dropin":
            assert prep.weights is not None
            expect = _expect_weights(settings, prep.weights, prep.model, prep.share)
        else:
            expect = _expect_env_file(settings, prep.env_new or b"")
        verification = _verify_unit(systemd, settings, sleep, expect_env=expect)
        _checkpoint("verified")
    except QtsafeError as exc:
        failure = f"activation failed at step after {state.get('step')}: {exc}"
        _try_journal(settings, "canary_activation_failed", notes, canary_id=prep.canary_id, canary_model=prep.model,
                     unit=settings.unit, error=str(exc), backups=backups)
        rb = _rollback_from_state(settings, state, systemd, sleep, trigger="activation_failed", reason=failure,
                                  violations=[str(exc)])
        outcome = "rolled back and verified" if rb.status is Status.PASS else "ROLLBACK FAILED"
        return ActivationResult(
            status=Status.FAIL, summary=f"CANARY FAILED: {exc} ({outcome})", mode=prep.mode, model=prep.model,
            dry_run=False, unit=settings.unit, share=prep.share, env_key=prep.env_key, canary_id=prep.canary_id,
            problems=(str(exc), *notes), baseline_weights=prep.baseline, baseline_source=prep.baseline_source,
            canary_weights=prep.weights, gate_summary=prep.gate_summary, plan=plan, backups=tuple(backups),
            rollback=rb, rollback_command=rollback_command(settings))
    git, proof_lines, proof_notes = _proof(systemd)
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
        dropin=({"path": str(st.dropin_path(settings)), "sha256": touched[0]["written_sha256"]}
                if prep.mode == "dropin" else None),
        env_file=({"path": str(settings.env_file), "sha256": touched[0]["written_sha256"],
                   "old_line": touched[0]["old_line"].rstrip("\r\n"), "new_line": touched[0]["new_line"].rstrip("\r\n")}
                  if prep.mode == "env_key" else None),
        git_hash=git, journal_proof=proof_lines, loosened_thresholds=settings.loosened(), activated_at=activated_at,
    )
    try:
        journal.append_record(settings, "canary_activated", **record)
    except QtsafeError as exc:
        # An activation nobody can audit is not an activation: undo it.
        rb = _rollback_from_state(settings, state, systemd, sleep, trigger="activation_failed",
                                  reason=f"journal append failed: {exc}", violations=[str(exc)])
        return ActivationResult(
            status=Status.FAIL, summary=f"CANARY FAILED: cannot journal the activation: {exc}", mode=prep.mode,
            model=prep.model, dry_run=False, unit=settings.unit, share=prep.share, env_key=prep.env_key,
            canary_id=prep.canary_id, problems=(str(exc),), plan=plan, backups=tuple(backups), rollback=rb)
    _checkpoint("journaled")
    applying = dict(state)
    state.update({"phase": st.PHASE_ACTIVE, "step": "journaled", "activated_at": activated_at,
                  "stages": [{"share": prep.share, "at": activated_at}], "git_hash": git})
    try:
        st.save_state(settings, state)
    except QtsafeError as exc:
        # The canary is live and journaled but its state cannot say so: nothing would monitor it. Undo it.
        rb = _rollback_from_state(settings, applying, systemd, sleep, trigger="activation_failed",
                                  reason=f"state write failed: {exc}", violations=[str(exc)])
        outcome = "rolled back and verified" if rb.status is Status.PASS else "ROLLBACK FAILED"
        return ActivationResult(
            status=Status.FAIL, summary=f"CANARY FAILED: cannot record the active canary: {exc} ({outcome})",
            mode=prep.mode, model=prep.model, dry_run=False, unit=settings.unit, share=prep.share,
            env_key=prep.env_key, canary_id=prep.canary_id, problems=(str(exc),), plan=plan,
            backups=tuple(backups), rollback=rb, rollback_command=cmd)
    what = f"{prep.model} {prep.share:.1%}" if prep.mode == "dropin" else f"{prep.env_key} for {prep.model}"
    return ActivationResult(
        status=Status.PASS, summary=f"CANARY ACTIVATED: {what} on {settings.unit} (verified)", mode=prep.mode,
        model=prep.model, dry_run=False, unit=settings.unit, share=prep.share, env_key=prep.env_key,
        canary_id=prep.canary_id, problems=tuple(proof_notes), baseline_weights=prep.baseline,
        baseline_source=prep.baseline_source, canary_weights=prep.weights, gate_summary=prep.gate_summary,
        plan=plan, backups=tuple(backups), verification=verification, rollback_command=cmd)

def _write_activation_backups(settings: Settings, prep: _Prepared) -> tuple[list[dict[str, Any]], Callable[[], None]]:
    """Write every backup; on failure remove what this call wrote (restoring an older baseline file) and raise."""
    written: list[Path] = []
    baseline_path = st.baseline_weights_path(settings)
    old_baseline = _read_bytes(baseline_path)
    replaced_baseline = False

    def undo() -> None:
        for path in reversed(written):
            with contextlib.suppress(OSError):
                path.unlink()
        if replaced_baseline and old_baseline is not None:
            with contextlib.suppress(QtsafeError):
                atomic_write_bytes(baseline_path, old_baseline)

    backups: list[dict[str, Any]] = []
    try:
        if prep.mode == "dropin":
            assert prep.baseline is not None
            text = _weights_file_text(prep.baseline).encode("utf-8")
            if old_baseline != text:
                # Safe to replace: no canary is active (checked under the lock), so this is not a canary's baseline.
                atomic_write_bytes(baseline_path, text)
                replaced_baseline = True
                if old_baseline is None:
                    written.append(baseline_path)
            backups.append({"of": "baseline_weights", "path": str(baseline_path), "sha256": _sha256_bytes(text)})
            copy = _unique_backup(settings.backup_dir, "baseline_model_weights", ".json")
            backups.append({"of": "baseline_weights", **_write_backup(copy, text)})
            written.append(copy)
            for name, data in prep.existing_dropins.items():
                path = _unique_backup(settings.backup_dir, f"{settings.unit}.d_{name}", ".bak")
                backups.append({"of": str(st.dropin_dir(settings) / name), **_write_backup(path, data)})
                written.append(path)
        if prep.env_bytes is not None:
            path = _unique_backup(settings.backup_dir, settings.env_file.name, ".bak")
            backups.append({"of": str(settings.env_file), **_write_backup(path, prep.env_bytes)})
            written.append(path)
    except QtsafeError:
        undo()
        raise
    return backups, undo

