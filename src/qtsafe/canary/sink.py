"""Where an activation's side effects go: the live system, or a recorder that only writes down what would happen.

The activation executor (``activate._execute_activation``) calls nothing but these methods to change the
world, so ``--dry-run`` runs the very same executor against :class:`RecordingSink` and prints its log: the
plan cannot drift from what a real run does. Both sinks log every step in the same shape (see :class:`Step`);
:class:`LiveSink` also performs it. The recorder never touches the live system: it names backups as a real
run would but with a ``<UTC stamp>`` placeholder, shows no env-file contents (only the edited line), and a
failure under it can never start a live rollback.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtsafe.canary import journal
from qtsafe.canary import state as st
from qtsafe.canary.rollback import RollbackResult, _rollback_from_state
from qtsafe.canary.state import CanaryState
from qtsafe.canary.steps import (
    JOURNAL_PROOF_LINES,
    Sleep,
    _checkpoint,
    _proof,
    _sha256_bytes,
    _unique_backup,
    _verify_unit,
    _write_backup,
)
from qtsafe.canary.systemd import Systemd
from qtsafe.config import Settings
from qtsafe.errors import WriteError
from qtsafe.fsio import atomic_write_bytes
from qtsafe.status import Status

STAMP_PLACEHOLDER = "<UTC stamp>"
ExpectEnv = Callable[[dict[str, str]], list[str]]


@dataclasses.dataclass(frozen=True)
class Step:
    """One logged side effect: ``write`` / ``remove`` a file, ``run`` a command, or a ``checkpoint``.

    ``content`` is the text written when it may be shown (weights, drop-ins); None for backups of the env
    file and the drop-ins (they may hold secrets) and for state and journal records. An env-file edit shows
    only its ``old_line`` and ``new_line``.
    """

    kind: str
    target: str
    purpose: str
    argv: tuple[str, ...] = ()
    content: str | None = None
    old_line: str | None = None
    new_line: str | None = None

    def as_plan_item(self) -> dict[str, Any]:
        if self.kind == "run":
            return {"run": list(self.argv), "purpose": self.purpose}
        item: dict[str, Any] = {self.kind: self.target, "path": self.target, "purpose": self.purpose,
                                "content": self.content}
        if self.old_line is not None:
            item.update(old_line=self.old_line, new_line=self.new_line)
        return item


class RecordingSink:
    """Logs every step and performs none: the dry run's sink, and the base of :class:`LiveSink`.

    Each public method logs its step, then calls a ``_do_*`` hook; here the hooks do nothing (and return
    what a real step would, with placeholders), :class:`LiveSink` overrides them to act. So both sinks log
    the same steps by construction.
    """

    live = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.steps: list[Step] = []

    # -- the steps ---------------------------------------------------------------------------------------
    def write_file(self, path: Path, data: bytes, *, purpose: str, mode: int | None = None, shown: bool = True,
                   edit: tuple[str, str] | None = None) -> None:
        self._log_write(path, data, purpose, shown, edit)
        self._do_write(path, data, mode)

    def remove(self, path: Path, *, purpose: str) -> None:
        self._log("remove", str(path), purpose)
        self._do_remove(path)

    def backup(self, directory: Path, stem: str, suffix: str, data: bytes, *, purpose: str,
               shown: bool = False) -> dict[str, Any]:
        """Write ``data`` to a new ``<dir>/<stem>.<UTC stamp><suffix>``; returns ``{"path", "sha256"}``."""
        path = self._backup_name(directory, stem, suffix)
        self._log_write(path, data, purpose, shown, None)
        return self._do_backup(path, data)

    def save_state(self, state: CanaryState) -> None:
        self._log("write", str(st.state_path(self.settings)), f"canary state ({state.phase}: {state.step})")
        self._do_save_state(state)

    def journal(self, action: str, **fields: Any) -> dict[str, Any]:
        self._log("write", str(self.settings.journal_path), f"journal record {action}")
        return self._do_journal(action, fields)

    def daemon_reload(self) -> None:
        self._run("load the drop-in", self.settings.systemctl, "daemon-reload")
        self._do_daemon_reload()

    def restart(self) -> None:
        self._run("restart the engine", self.settings.systemctl, "restart", self.settings.unit)
        self._do_restart()

    def verify(self, expect_env: ExpectEnv) -> dict[str, Any]:
        s = self.settings
        self._run("is the unit active after the restart?", s.systemctl, "is-active", s.unit)
        self._run("still active at the second look?", s.systemctl, "is-active", s.unit)
        self._run("does the unit's environment hold what was applied?", s.systemctl, "show", s.unit, "-p",
                  "Environment")
        return self._do_verify(expect_env)

    def proof(self) -> tuple[str | None, list[str], list[str]]:
        s = self.settings
        self._run("journal proof", s.journalctl, "-u", s.unit, "-n", str(JOURNAL_PROOF_LINES), "--no-pager")
        return self._do_proof()

    def checkpoint(self, step: str) -> None:
        self._log("checkpoint", step, "crash-test hook")
        self._do_checkpoint(step)

    def roll_back(self, state: CanaryState, *, reason: str, violations: list[str]) -> RollbackResult:
        self._log("rollback", str(st.state_path(self.settings)), reason)
        return self._do_roll_back(state, reason, violations)

    # -- the recorder's effects: none ------------------------------------------------------------------
    def _backup_name(self, directory: Path, stem: str, suffix: str) -> Path:
        return directory / f"{stem}.{STAMP_PLACEHOLDER}{suffix}"

    def _do_write(self, path: Path, data: bytes, mode: int | None) -> None:
        return None

    def _do_remove(self, path: Path) -> None:
        return None

    def _do_backup(self, path: Path, data: bytes) -> dict[str, Any]:
        return {"path": str(path), "sha256": _sha256_bytes(data)}

    def _do_save_state(self, state: CanaryState) -> None:
        return None

    def _do_journal(self, action: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {"action": action, **fields}

    def _do_daemon_reload(self) -> None:
        return None

    def _do_restart(self) -> None:
        return None

    def _do_verify(self, expect_env: ExpectEnv) -> dict[str, Any]:
        return {"dry_run": True}

    def _do_proof(self) -> tuple[str | None, list[str], list[str]]:
        return None, [], []

    def _do_checkpoint(self, step: str) -> None:
        return None

    def _do_roll_back(self, state: CanaryState, reason: str, violations: list[str]) -> RollbackResult:
        # Never a live rollback: a dry run that reaches a failure says so and changes nothing.
        return RollbackResult(status=Status.FAIL, summary=f"DRY RUN: a real run would roll back here ({reason}); "
                              "nothing changed", trigger="activation_failed", reason=reason,
                              violations=tuple(violations))

    # -- the log ---------------------------------------------------------------------------------------
    def _log(self, kind: str, target: str, purpose: str, **extra: Any) -> None:
        self.steps.append(Step(kind, target, purpose, **extra))

    def _run(self, purpose: str, *argv: str) -> None:
        self._log("run", shlex.join(argv), purpose, argv=tuple(argv))

    def _log_write(self, path: Path, data: bytes, purpose: str, shown: bool,
                   edit: tuple[str, str] | None) -> None:
        self._log("write", str(path), purpose, content=data.decode("utf-8", "replace") if shown else None,
                  old_line=edit[0] if edit else None, new_line=edit[1] if edit else None)

    def plan(self) -> dict[str, Any]:
        """The log as the plan ``--dry-run`` prints: steps in order, plus files and commands on their own."""
        items = [step.as_plan_item() for step in self.steps if step.kind != "checkpoint"]
        return {"steps": items, "files": [i for i in items if "run" not in i],
                "commands": [i["run"] for i in items if "run" in i],
                "settle_seconds": self.settings.canary.settle_seconds,
                "recheck_seconds": self.settings.canary.recheck_seconds,
                "on_failure": "automatic rollback to the backups, verified and journaled"}


class LiveSink(RecordingSink):
    """Performs each step on the live system: atomic writes, systemctl through the adapter, the journal."""

    live = True

    def __init__(self, settings: Settings, systemd: Systemd, sleep: Sleep) -> None:
        super().__init__(settings)
        self.systemd = systemd
        self.sleep = sleep

    def _backup_name(self, directory: Path, stem: str, suffix: str) -> Path:
        return _unique_backup(directory, stem, suffix)

    def _do_write(self, path: Path, data: bytes, mode: int | None) -> None:
        atomic_write_bytes(path, data, mode=mode)

    def _do_remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise WriteError(f"cannot remove {path}: {exc.strerror or exc}") from exc

    def _do_backup(self, path: Path, data: bytes) -> dict[str, Any]:
        return _write_backup(path, data)

    def _do_save_state(self, state: CanaryState) -> None:
        st.save_state(self.settings, state)

    def _do_journal(self, action: str, fields: dict[str, Any]) -> dict[str, Any]:
        return journal.append_record(self.settings, action, **fields)

    def _do_daemon_reload(self) -> None:
        self.systemd.daemon_reload()

    def _do_restart(self) -> None:
        self.systemd.restart()

    def _do_verify(self, expect_env: ExpectEnv) -> dict[str, Any]:
        return _verify_unit(self.systemd, self.settings, self.sleep, expect_env=expect_env)

    def _do_proof(self) -> tuple[str | None, list[str], list[str]]:
        return _proof(self.systemd)

    def _do_checkpoint(self, step: str) -> None:
        _checkpoint(step)

    def _do_roll_back(self, state: CanaryState, reason: str, violations: list[str]) -> RollbackResult:
        return _rollback_from_state(self.settings, state, self.systemd, self.sleep, trigger="activation_failed",
                                    reason=reason, violations=violations)
