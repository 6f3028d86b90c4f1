"""``rollback --last-activation``: restore the env file from its newest backup not restored before, and verify."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path

from qtsafe.canary import journal
from qtsafe.canary import state as st
from qtsafe.canary.rollback import RollbackResult, _refuse_unit, rollback
from qtsafe.canary.steps import (
    Confirm,
    Sleep,
    _expect_env_file,
    _q,
    _read_bytes,
    _sha256_bytes,
    _try_journal,
    _unique_backup,
    _verify_unit,
    _write_backup,
)
from qtsafe.canary.systemd import Systemd
from qtsafe.config import Settings
from qtsafe.errors import QtsafeError, StateError
from qtsafe.fsio import atomic_write_bytes
from qtsafe.status import Status

_BACKUP_STAMP = re.compile(r"\.(\d{8}_\d{6})(?:_(\d{2,}))?\.bak$")


def env_backups(settings: Settings) -> list[Path]:
    """Env file backups eligible for ``--last`` (not the pre-restore safety copies), oldest first."""
    directory = settings.backup_dir
    if not directory.is_dir():
        return []
    prefix = settings.env_file.name + "."
    found = []
    for path in directory.iterdir():
        if not path.name.startswith(prefix) or path.name.endswith(".pre-restore.bak"):
            continue
        match = _BACKUP_STAMP.search(path.name)
        if match and path.name == f"{prefix}{match.group(0)[1:]}":
            found.append(((match.group(1), int(match.group(2) or 0)), path))
    return [path for _, path in sorted(found)]


def rollback_last(
    settings: Settings,
    *,
    reason: str = "",
    confirm: Confirm | None = None,
    systemd: Systemd | None = None,
    sleep: Sleep = time.sleep,
) -> RollbackResult:
    """Restore the newest env file backup not restored before (repeat to walk back through history).

    With a canary in flight it does the ordinary rollback instead (that is what the operator means).
    """
    systemd = systemd or Systemd(settings)
    refused = _refuse_unit(settings, "manual_last", reason, ())
    if refused is not None:
        return refused
    if st.state_path(settings).exists() or st.dropin_path(settings).exists():
        return rollback(settings, trigger="manual_last", reason=reason, confirm=confirm, systemd=systemd, sleep=sleep)
    trigger = "manual_last"
    try:
        with st.unit_lock(settings):
            restored = {r.get("restored_backup") for r in journal.read_records(settings)
                        if r.get("action") == "rollback_executed"}
            candidates = [p for p in env_backups(settings) if str(p) not in restored]
            if not candidates:
                return RollbackResult(status=Status.PASS, trigger=trigger, reason=reason, nothing_to_do=True,
                                      summary=f"NOTHING TO ROLL BACK: no unrestored backup of {settings.env_file} "
                                      f"in {settings.backup_dir}")
            chosen = candidates[-1]
            if confirm is not None and not confirm(
                    f"Restore {settings.env_file} from {chosen}, restart {settings.unit}, verify."):
                return RollbackResult(status=Status.BLOCKED, summary="ROLLBACK NOT CONFIRMED: nothing changed",
                                      trigger=trigger, reason=reason)
            return _restore_env_backup(settings, chosen, systemd, sleep, reason)
    except QtsafeError as exc:
        return RollbackResult(status=Status.FAIL, summary=f"ROLLBACK FAILED: {exc}", trigger=trigger, reason=reason)


def _restore_env_backup(settings: Settings, chosen: Path, systemd: Systemd, sleep: Sleep, reason: str
                        ) -> RollbackResult:
    trigger = "manual_last"
    actions: list[str] = []
    notes: list[str] = []
    data = chosen.read_bytes()
    digest = _sha256_bytes(data)
    recorded = _recorded_backup_sha(settings, chosen)
    manual = (f"sudo cp {_q(chosen)} {_q(settings.env_file)}",
              f"sudo {_q(settings.systemctl)} restart {_q(settings.unit)}")
    try:
        if recorded is not None and recorded != digest:
            raise StateError(f"backup {chosen} fails its recorded checksum ({digest} != {recorded})")
        current = _read_bytes(settings.env_file)
        pre = None
        if current is not None:
            pre = _write_backup(_unique_backup(settings.backup_dir, settings.env_file.name, ".pre-restore.bak"),
                                current)
            actions.append(f"saved the current env file to {pre['path']}")
        atomic_write_bytes(settings.env_file, data)
        actions.append(f"restored {settings.env_file} from {chosen}")
        systemd.restart()
        actions.append(f"restart {settings.unit}")
        verification = _verify_unit(systemd, settings, sleep, expect_env=_expect_env_file(settings, data))
    except (QtsafeError, OSError) as exc:
        _try_journal(settings, "rollback_failed", notes, unit=settings.unit, trigger=trigger, reason=reason,
                     restored_backup=str(chosen), error=str(exc), actions=actions, manual_steps=list(manual))
        return RollbackResult(status=Status.FAIL, summary=f"ROLLBACK FAILED: {exc}", trigger=trigger, reason=reason,
                              actions=tuple(actions + notes), manual_steps=manual, journal_action="rollback_failed",
                              restored_backup=str(chosen))
    journal.append_record(settings, "rollback_executed", unit=settings.unit, trigger=trigger, reason=reason,
                          violations=[], restored_backup=str(chosen), restored_sha256=digest,
                          pre_restore_backup=pre, actions=actions)
    return RollbackResult(status=Status.PASS, summary=f"ROLLBACK VERIFIED: {settings.env_file} restored from "
                          f"{chosen.name}", trigger=trigger, reason=reason, actions=tuple(actions),
                          verification=verification, journal_action="rollback_executed", restored_backup=str(chosen))


def _recorded_backup_sha(settings: Settings, path: Path) -> str | None:
    for record in reversed(journal.read_records(settings)):
        for backup in record.get("backups") or []:
            if isinstance(backup, Mapping) and backup.get("path") == str(path):
                return str(backup.get("sha256"))
    return None
