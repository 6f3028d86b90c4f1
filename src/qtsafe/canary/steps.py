"""The steps every canary command shares: unit verification, proof, expectations, backups, journaling, checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qtsafe.canary import journal
from qtsafe.canary import state as st
from qtsafe.canary.systemd import Systemd
from qtsafe.canary.weights import parse_weights_json, weights_json
from qtsafe.config import Settings
from qtsafe.errors import InputError, QtsafeError, SystemdError, WriteError
from qtsafe.fsio import atomic_write_bytes, probe_writable, sha256_file
from qtsafe.timeutil import file_stamp

Sleep = Callable[[float], None]
Confirm = Callable[[str], bool]
CRASH_ENV = "TEST_QTSAFE_CRASH_AT"
ACTIVATION_STEPS = ("backed_up", "state_written", "dropin_written", "daemon_reloaded", "restarted", "verified",
                    "journaled")
ROLLBACK_STEPS = ("rb_started", "rb_files_restored", "rb_daemon_reloaded", "rb_restarted", "rb_verified",
                  "rb_journaled")
JOURNAL_PROOF_LINES = 20


def _checkpoint(step: str) -> None:
    """Test hook: with ``TEST_QTSAFE_CRASH_AT=<step>`` the process SIGKILLs itself here (crash-safety tests).

    Not ``QTSAFE_*``: the settings loader rejects unknown ``QTSAFE_`` variables, rightly.
    """
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _env_fingerprint(env: Mapping[str, str]) -> dict[str, str]:
    """Per-variable SHA-256 of the unit's Environment: comparable later without storing secrets in clear."""
    return {name: _sha256_bytes(value.encode("utf-8")) for name, value in sorted(env.items())}


def rollback_command(settings: Settings) -> str:
    """The exact command that rolls this canary back (printed after activation, stored in the journal)."""
    parts = ["qtsafe"]
    if settings.config_file:
        parts += ["--config", str(Path(settings.config_file).resolve())]
    parts += ["canary", "rollback", "--base-dir", str(settings.base_dir.resolve()), "--unit", settings.unit, "--yes"]
    return shlex.join(parts)


def _probe_writable(directory: Path) -> str | None:
    """The one writability probe, :func:`qtsafe.fsio.probe_writable` (doctor uses it too)."""
    return probe_writable(directory)


def _writability_problems(settings: Settings, directories: Sequence[Path]) -> list[str]:
    problems = []
    for directory in directories:
        reason = _probe_writable(directory)
        if reason:
            problems.append(reason)
    if problems and os.geteuid() != 0:
        problems.insert(0, f"not running as root (uid {os.geteuid()}); run with sudo")
    return problems


def _unique_backup(directory: Path, stem: str, suffix: str) -> Path:
    """``<dir>/<stem>.<UTC stamp>[_NN]<suffix>``: a new name every time, never overwriting an older backup."""
    stamp = file_stamp()
    candidate = directory / f"{stem}.{stamp}{suffix}"
    counter = 1
    while candidate.exists():
        candidate = directory / f"{stem}.{stamp}_{counter:02d}{suffix}"
        counter += 1
    return candidate


def _weights_file_text(weights: Mapping[str, float]) -> str:
    return json.dumps(dict(sorted(weights.items())), indent=2, allow_nan=False) + "\n"


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _verify_unit(
    systemd: Systemd, settings: Settings, sleep: Sleep, *, expect_env: Callable[[dict[str, str]], list[str]]
) -> dict[str, Any]:
    """Settle, check active twice, check the configured environment. Raises SystemdError with the first problem."""
    sleep(settings.canary.settle_seconds)
    first = systemd.is_active()
    if first != "active":
        raise SystemdError(f"{settings.unit} is {first!r} {settings.canary.settle_seconds:g}s after the restart")
    sleep(settings.canary.recheck_seconds)
    second = systemd.is_active()
    if second != "active":
        raise SystemdError(f"{settings.unit} was active, then {second!r} at the second look (it died)")
    env = systemd.environment()
    problems = expect_env(env)
    if problems:
        raise SystemdError(f"the unit's environment is not what was applied: {'; '.join(problems)}")
    return {"active_first_look": first, "active_second_look": second, "environment_checked": True}


def _proof(systemd: Systemd) -> tuple[str | None, list[str], list[str]]:
    """Git hash and the last journal lines; missing proof is noted, never fatal after a verified restart."""
    notes: list[str] = []
    git = systemd.git_head()
    if git is None and systemd.settings.engine_repo:
        notes.append(f"git hash of {systemd.settings.engine_repo} unavailable")
    try:
        lines = systemd.journal_tail(JOURNAL_PROOF_LINES)
    except SystemdError as exc:
        lines = []
        notes.append(f"journal proof unavailable: {exc}")
    return git, lines, notes


def _expect_weights(settings: Settings, weights: Mapping[str, float], model: str | None, share: float | None
                    ) -> Callable[[dict[str, str]], list[str]]:
    def check(env: dict[str, str]) -> list[str]:
        problems = []
        var = settings.weights_variable
        raw = env.get(var)
        if raw is None:
            problems.append(f"{var} is not set")
        else:
            try:
                live = parse_weights_json(raw, where=var)
            except InputError as exc:
                live = None
                problems.append(str(exc))
            if live is not None and live != dict(weights):
                problems.append(f"{var} is {raw}, expected {weights_json(weights)}")
        if model is None:
            for marker in (st.MARKER_MODEL, st.MARKER_WEIGHT):
                if marker in env:
                    problems.append(f"{marker} is still set")
        else:
            if env.get(st.MARKER_MODEL) != model:
                problems.append(f"{st.MARKER_MODEL} is {env.get(st.MARKER_MODEL)!r}, expected {model!r}")
            if env.get(st.MARKER_WEIGHT) != repr(share):
                problems.append(f"{st.MARKER_WEIGHT} is {env.get(st.MARKER_WEIGHT)!r}, expected {share!r}")
        return problems

    return check


def _try_journal(settings: Settings, action: str, notes: list[str], *,
                 append: Callable[..., dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any] | None:
    """Journal on a failure path: a journal problem must not hide the failure being reported.

    ``append`` (a sink's ``journal``) replaces the direct append, so a dry run journals nothing.
    """
    try:
        if append is not None:
            return append(action, **fields)
        return journal.append_record(settings, action, **fields)
    except QtsafeError as exc:
        notes.append(f"could not journal {action}: {exc}")
        return None


def _write_backup(path: Path, data: bytes) -> dict[str, Any]:
    atomic_write_bytes(path, data, mode=0o600)
    digest = sha256_file(path)
    if digest != _sha256_bytes(data):
        raise WriteError(f"backup {path} does not read back with the expected checksum")
    return {"path": str(path), "sha256": digest}


def _expect_env_file(settings: Settings, expected: bytes) -> Callable[[dict[str, str]], list[str]]:
    def check(_env: dict[str, str]) -> list[str]:
        data = _read_bytes(settings.env_file)
        return [] if data == expected else [f"{settings.env_file} does not hold the applied edit"]

    return check


def _q(value: Any) -> str:
    """One shell word: every path, unit and binary in a printed command is quoted, whatever it holds."""
    return shlex.quote(str(value))

