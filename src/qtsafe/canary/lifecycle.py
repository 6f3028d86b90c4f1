"""Canary lifecycle: activate, rollback (and ``--last``), promote, status.

Compute, then act: each command first gathers everything it needs and refuses (nothing changed) on any
doubt; then it applies a fixed sequence of small steps. Before each step that touches the live system the
state file says what is in flight and how to undo it, so a crash at any point leaves a state that
``status`` explains and ``rollback`` repairs. A failure while applying rolls back automatically.

Entry points return frozen result dataclasses with ``status`` and ``to_dict()``; nothing here calls
``sys.exit`` or imports click. Injected for tests: ``gate`` (the quality gate), ``open_source`` (the
telemetry source factory), ``systemd`` (the adapter) and ``sleep`` (settle periods).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qtsafe import __version__
from qtsafe.canary import envfile, journal
from qtsafe.canary import state as st
from qtsafe.canary.systemd import Systemd
from qtsafe.canary.weights import (
    MAX_CANARY_SHARE,
    PROMOTION_STAGES,
    canary_weights,
    check_model_name,
    parse_weights_json,
    weights_json,
)
from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import ConfigError, InputError, QtsafeError, StateError, SystemdError, WriteError
from qtsafe.fsio import atomic_write_bytes, atomic_write_text, probe_writable, sha256_file
from qtsafe.status import Status
from qtsafe.timeutil import file_stamp, format_duration, iso, iso_ms, parse_utc, utc_now

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


# ---- results ---------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if isinstance(value, Status):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Result:
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class RollbackResult(_Result):
    """Outcome of a rollback. PASS: verified (or nothing to roll back); FAIL: the rollback itself failed."""

    status: Status
    summary: str
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


@dataclasses.dataclass(frozen=True)
class ActivationResult(_Result):
    """Outcome of ``canary activate`` (or its dry run). PASS only for a verified activation or a clean plan."""

    status: Status
    summary: str
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


@dataclasses.dataclass(frozen=True)
class PromotionResult(_Result):
    """Outcome of ``canary promote``."""

    status: Status
    summary: str
    model: str | None
    from_share: float | None
    to_share: float
    reason: str
    problems: tuple[str, ...] = ()
    weights: dict[str, float] | None = None
    baseline_updated: bool = False
    verification: dict[str, Any] = dataclasses.field(default_factory=dict)
    rollback: RollbackResult | None = None


@dataclasses.dataclass(frozen=True)
class StatusResult(_Result):
    """Outcome of ``canary status``: PASS (none / monitored), WAIT (unmonitored, stale), FAIL (inconsistent)."""

    status: Status
    summary: str
    unit: str
    active: bool
    phase: str | None
    canary: dict[str, Any] | None
    unit_state: str | None
    dropin_present: bool
    baseline_weights: dict[str, float] | None
    live_weights: dict[str, float] | None
    heartbeat: dict[str, Any] | None
    heartbeat_age_seconds: float | None
    problems: tuple[str, ...]
    repair: str | None
    journal_tail: tuple[dict[str, Any], ...]


# ---- shared helpers --------------------------------------------------------------------------------

def rollback_command(settings: Settings) -> str:
    """The exact command that rolls this canary back (printed after activation, stored in the journal)."""
    parts = ["qtsafe"]
    if settings.config_file:
        parts += ["--config", str(Path(settings.config_file).resolve())]
    parts += ["canary", "rollback", "--base-dir", str(settings.base_dir.resolve()), "--unit", settings.unit, "--yes"]
    return shlex.join(parts)


def _probe_writable(directory: Path) -> str | None:
    """The one writability probe, :func:`qtsafe.fsio.probe_writable` (moved there for doctor too)."""
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


def _unit_quote(assignment: str) -> str:
    """One ``Environment=`` operand, double-quoted for the unit-file parser. Only safe characters get here."""
    if any(ch in assignment for ch in "\\\n\r%$`") or not assignment.isprintable():
        raise InputError(f"refusing to write {assignment[:80]!r} into a unit file")
    return '"' + assignment.replace('"', '\\"') + '"'


def render_dropin(settings: Settings, canary_id: str, weights: Mapping[str, float], model: str | None,
                  share: float | None) -> str:
    """The drop-in text: the engine's weights variable, plus the canary markers when ``model`` is given."""
    lines = [
        f"# Written by qtsafe {__version__} at {iso(utc_now())} for {canary_id}.",
        "# Remove it only with 'qtsafe canary rollback' (it restores and verifies the baseline).",
        "[Service]",
        f"Environment={_unit_quote(f'{settings.weights_variable}={weights_json(weights)}')}",
    ]
    if model is not None and share is not None:
        lines.append(f"Environment={_unit_quote(f'{st.MARKER_MODEL}={model}')}")
        lines.append(f"Environment={_unit_quote(f'{st.MARKER_WEIGHT}={share!r}')}")
    return "\n".join(lines) + "\n"


def _weights_file_text(weights: Mapping[str, float]) -> str:
    return json.dumps(dict(sorted(weights.items())), indent=2, allow_nan=False) + "\n"


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _live_weights(settings: Settings, env: Mapping[str, str], env_bytes: bytes | None) -> tuple[dict[str, float], str]:
    """Baseline weights from the live source and a description of it. Never invented.

    Order: the engine's weights variable in the unit's Environment (unit file and drop-ins), else the
    weights JSON named by ``weights_file``. If the env file sets the variable, systemd lets it override every
    drop-in ``Environment=``, so a canary drop-in would be silently ignored: refused.
    """
    var = settings.weights_variable
    if env_bytes is not None and envfile.read_value(env_bytes, var) is not None:
        raise InputError(
            f"{settings.env_file} sets {var}; systemd gives EnvironmentFile= precedence over drop-in Environment=, "
            f"so a canary drop-in would change nothing. Move {var} out of the env file (or use --env-key mode)"
        )
    if var in env:
        return parse_weights_json(env[var], where=f"{var} in the unit's environment"), f"environment:{var}"
    if settings.weights_file:
        path = Path(settings.weights_file)
        data = _read_bytes(path)
        if data is None:
            raise InputError(f"baseline weights file {path} does not exist")
        return parse_weights_json(data.decode("utf-8", errors="replace"), where=str(path)), f"file:{path}"
    raise InputError(
        f"no baseline weights: {var} is not in the unit's environment and no weights_file is configured"
    )


def _gate_model(gate_dict: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    """The gate's verdict entry for ``model`` (``{"name": ..., "passed": ..., "whole": {"n": ...}}``), if any."""
    models = gate_dict.get("models")
    if isinstance(models, Mapping):
        entry = models.get(model)
        return entry if isinstance(entry, Mapping) else None
    if isinstance(models, (list, tuple)):
        for entry in models:
            if isinstance(entry, Mapping) and (entry.get("name") == model or entry.get("model") == model):
                return entry
    return None


def _gate_events(entry: Mapping[str, Any]) -> int | None:
    """Evaluated events for the model over the gate's whole window (runbook field ``quality_gate_events``)."""
    whole = entry.get("whole")
    if isinstance(whole, Mapping) and isinstance(whole.get("n"), int):
        return int(whole["n"])
    for key in ("events", "n"):
        if isinstance(entry.get(key), int):
            return int(entry[key])
    return None


def _default_gate() -> Callable[..., Any]:
    from qtsafe.gate import run_quality_gate_after  # lazy: the canary package must import without the gate

    return run_quality_gate_after


def _default_open_source() -> Callable[..., Any]:
    from qtsafe.telemetry import open_source

    return open_source


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


def _try_journal(settings: Settings, action: str, notes: list[str], **fields: Any) -> dict[str, Any] | None:
    """Journal on a failure path: a journal problem must not hide the failure being reported."""
    try:
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


# ---- activate --------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Prepared:
    canary_id: str
    mode: str
    model: str
    share: float | None
    baseline: dict[str, float] | None
    baseline_source: str | None
    weights: dict[str, float] | None
    env: dict[str, str]
    env_bytes: bytes | None
    env_key: str | None
    env_new: bytes | None
    env_old_line: bytes | None
    env_new_line: bytes | None
    dropin_text: str | None
    gate_summary: str
    gate_events: int | None
    cutover: str | None
    existing_dropins: dict[str, bytes]


def _refused(mode: str, model: str, settings: Settings, dry_run: bool, problems: Sequence[str], **extra: Any
             ) -> ActivationResult:
    first = problems[0] if problems else "refused"
    return ActivationResult(
        status=Status.BLOCKED, summary=f"CANARY BLOCKED: {first} (nothing changed)", mode=mode, model=model,
        dry_run=dry_run, unit=settings.unit, problems=tuple(problems), **extra,
    )


def _prepare_activation(
    settings: Settings, *, model: str, share: float, env_key: str | None, env_value: str | None,
    after: Any, systemd: Systemd, gate: Callable[..., Any] | None, open_source: Callable[..., Any] | None,
    write_report: bool,
) -> _Prepared:
    """Every preflight check, in order; raises QtsafeError on the first refusal. Reads only."""
    mode = "env_key" if env_key is not None else "dropin"
    check_model_name(model)
    if mode == "env_key":
        envfile.check_key(env_key or "")
        if env_value is None:
            raise InputError("--env-key needs --value")
        envfile.encode_value(env_value)
    elif isinstance(share, bool) or not (isinstance(share, (int, float)) and math.isfinite(share)) \
            or not 0.0 < share <= MAX_CANARY_SHARE:
        raise InputError(f"share {share!r} is outside (0, {MAX_CANARY_SHARE}]")
    current = st.load_state(settings)
    if current is not None:
        raise StateError(
            f"a canary is already {current.get('phase')} for {settings.unit} "
            f"(model {current.get('model')}, since {current.get('activated_at') or current.get('started_at')}); "
            "roll it back or promote it first"
        )
    if st.dropin_path(settings).exists():
        raise StateError(
            f"{st.dropin_path(settings)} exists but no canary is recorded (inconsistent); "
            "run 'qtsafe canary status' and 'qtsafe canary rollback --yes' to repair"
        )
    directories = [settings.data_dir, settings.logs_dir, settings.backup_dir, st.lock_path(settings).parent]
    directories.append(settings.env_file.parent if mode == "env_key" else st.dropin_dir(settings))
    problems = _writability_problems(settings, directories)
    if problems:
        raise WriteError("; ".join(problems))
    unit_state = systemd.is_active()
    if unit_state != "active":
        raise SystemdError(f"{settings.unit} is {unit_state!r}, not active; a canary needs a running engine")
    env = systemd.environment()
    env_bytes = _read_bytes(settings.env_file)
    baseline = weights = None
    baseline_source = dropin_text = None
    env_new = old_line = new_line = None
    canary_id = f"{file_stamp()}_{model}"
    if mode == "dropin":
        baseline, baseline_source = _live_weights(settings, env, env_bytes)
        weights = canary_weights(baseline, model, share)
        dropin_text = render_dropin(settings, canary_id, weights, model, float(share))
    else:
        if env_bytes is None:
            raise InputError(f"env file {settings.env_file} does not exist")
        env_new, old_line, new_line = envfile.replace_value(env_bytes, env_key or "", env_value or "")
        if env_new == env_bytes:
            raise InputError(f"{env_key} already has that value; nothing to activate")
    # The gate runs last: it is the slowest check and needs Redis.
    opener = open_source or _default_open_source()
    run_gate = gate or _default_gate()
    try:
        source = opener(settings)
    except QtsafeError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreachable Redis is a refusal, whatever the client raised
        raise InputError(f"telemetry source unavailable: {type(exc).__name__}: {exc}") from exc
    cutover = _resolve_after(after, systemd)
    try:
        # Every model of the ensemble is judged, not only the canary: the monitor judges them all, so a defect
        # elsewhere would roll the canary back at its first check. Better refused now, with nothing changed.
        judged = tuple(sorted(set(baseline or ()) | {model}))
        result = run_gate(settings, source, mode="canary", after=cutover, models=judged, write_report=write_report,
                          require_fresh=True)
    except QtsafeError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the gate or Redis raised, the canary is refused
        raise InputError(f"quality gate could not run: {type(exc).__name__}: {exc}") from exc
    gate_status = getattr(result, "status", None)
    gate_summary = str(getattr(result, "summary", "")) or str(gate_status)
    if gate_status is Status.COLLECTED:
        raise InputError(f"quality gate returned a collection-mode result ({gate_summary}); a canary needs canary mode")
    if gate_status is not Status.PASS:
        raise InputError(f"quality gate did not pass: {gate_summary}")
    gate_dict = result.to_dict() if hasattr(result, "to_dict") else {}
    if str(gate_dict.get("mode", "canary")) != "canary":
        raise InputError(f"quality gate ran in {gate_dict.get('mode')!r} mode, not canary mode")
    entry = _gate_model(gate_dict, model)
    if entry is None:
        known = f" (baseline has {', '.join(sorted(baseline))})" if baseline else ""
        raise InputError(f"unknown model {model!r}: the quality gate judged no telemetry for it{known}")
    events = _gate_events(entry)
    needed = settings.thresholds.min_events_canary
    if entry.get("passed") is False:
        raise InputError(f"quality gate passed overall but {model} did not: {gate_summary}")
    if events is None or events < needed:
        raise InputError(f"quality gate judged {events} events for {model}; a canary needs at least {needed}")
    existing = {}
    if st.dropin_dir(settings).is_dir():
        for path in sorted(st.dropin_dir(settings).glob("*.conf")):
            existing[path.name] = path.read_bytes()
    return _Prepared(
        canary_id=canary_id, mode=mode, model=model, share=float(share) if mode == "dropin" else None,
        baseline=baseline, baseline_source=baseline_source, weights=weights, env=env, env_bytes=env_bytes,
        env_key=env_key, env_new=env_new, env_old_line=old_line, env_new_line=new_line, dropin_text=dropin_text,
        gate_summary=gate_summary, gate_events=events, cutover=iso(cutover),
        existing_dropins=existing,
    )


def _resolve_after(after: Any, systemd: Systemd) -> Any:
    """``after`` may be None, a datetime, an ISO string or 'auto' (the unit's ActiveEnterTimestamp)."""
    if after is None or not isinstance(after, str):
        return after
    if after.strip().lower() != "auto":
        return parse_utc(after)
    return systemd.active_since()


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


def _expect_env_file(settings: Settings, expected: bytes) -> Callable[[dict[str, str]], list[str]]:
    def check(_env: dict[str, str]) -> list[str]:
        data = _read_bytes(settings.env_file)
        return [] if data == expected else [f"{settings.env_file} does not hold the applied edit"]

    return check


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


# ---- rollback --------------------------------------------------------------------------------------

def _q(value: Any) -> str:
    """One shell word: every path, unit and binary in a printed command is quoted, whatever it holds."""
    return shlex.quote(str(value))


def _manual_steps(settings: Settings, state: Mapping[str, Any] | None) -> tuple[str, ...]:
    steps = []
    for entry in reversed((state or {}).get("touched", [])):
        if entry.get("backup"):
            steps.append(f"sha256sum {_q(entry['backup'])}  # expect {entry.get('backup_sha256')}")
            steps.append(f"sudo cp {_q(entry['backup'])} {_q(entry['path'])}")
        else:
            steps.append(f"sudo rm -f {_q(entry['path'])}")
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


def _restore_touched(settings: Settings, entry: Mapping[str, Any]) -> str:
    """Put one touched live file back to its pre-canary bytes. Returns what was done; raises on failure."""
    path = Path(entry["path"])
    current = _read_bytes(path)
    backup = entry.get("backup")
    if backup is None:
        if current is None:
            return f"{path} already absent"
        try:
            path.unlink()
        except OSError as exc:
            raise WriteError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        return f"removed {path}"
    backup_bytes = _read_bytes(Path(backup))
    backup_ok = backup_bytes is not None and _sha256_bytes(backup_bytes) == entry.get("backup_sha256")
    if current is not None and _sha256_bytes(current) == entry.get("backup_sha256"):
        return f"{path} already matches its backup"
    if entry.get("kind") == "env_file" and current is not None and \
            _sha256_bytes(current) != entry.get("written_sha256"):
        # Someone else edited the file since: put back only our line, keeping their edits.
        reverted = envfile.replace_line(current, str(entry["key"]), str(entry["new_line"]).encode("utf-8",
                                        "surrogateescape"), str(entry["old_line"]).encode("utf-8", "surrogateescape"))
        atomic_write_bytes(path, reverted)
        return f"reverted the {entry['key']}= line of {path} (the file had other edits, kept)"
    if not backup_ok:
        raise StateError(f"backup {backup} is missing or fails its checksum; cannot restore {path}")
    assert backup_bytes is not None
    atomic_write_bytes(path, backup_bytes)
    return f"restored {path} from {backup} (sha256 verified)"


def _rollback_from_state(
    settings: Settings, state: dict[str, Any] | None, systemd: Systemd, sleep: Sleep, *, trigger: str,
    reason: str, violations: Sequence[str],
) -> RollbackResult:
    """Undo whatever ``state`` records (or an orphan drop-in when there is no state). Caller holds the lock."""
    actions: list[str] = []
    notes: list[str] = []
    model = state.get("model") if state else None
    canary_id = state.get("canary_id") if state else None
    try:
        if state is not None:
            state = dict(state, phase=st.PHASE_ROLLING_BACK, rollback_trigger=trigger, rollback_reason=reason)
            try:
                st.save_state(settings, state)
            except QtsafeError as exc:
                # Best effort: the state on disk already records everything a later rollback needs, and
                # taking the canary out (removing a drop-in) needs no disk space. A full disk must not stop it.
                notes.append(f"could not mark the state rolling back ({exc}); rolling back anyway")
        _checkpoint("rb_started")
        touched = list(state.get("touched", [])) if state else []
        if not touched:
            touched = [{"path": str(st.dropin_path(settings)), "kind": "dropin", "backup": None}]
        for entry in reversed(touched):
            actions.append(_restore_touched(settings, entry))
        for directory in (state or {}).get("created_dirs", []):
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
        needs_reload = any(e.get("kind") != "env_file" for e in touched)
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
                st.save_state(settings, dict(state, phase=st.PHASE_ROLLING_BACK, last_error=str(exc)))
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
            baseline_weights=(state or {}).get("baseline_weights"), stage=(state or {}).get("share"),
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


def _expect_baseline(settings: Settings, state: Mapping[str, Any] | None) -> Callable[[dict[str, str]], list[str]]:
    def check(env: dict[str, str]) -> list[str]:
        problems = [f"{marker} is still set" for marker in (st.MARKER_MODEL, st.MARKER_WEIGHT) if marker in env]
        expected = (state or {}).get("baseline_environment")
        if expected is not None:
            live = _env_fingerprint(env)
            differ = sorted(name for name in set(live) | set(expected) if live.get(name) != expected.get(name))
            if differ:
                problems.append(f"environment differs from the pre-canary baseline in {', '.join(differ)}")
        for entry in (state or {}).get("touched", []):
            if entry.get("kind") == "env_file":
                data = _read_bytes(Path(entry["path"])) or b""
                if envfile.key_lines(data, str(entry["key"])) and entry["old_line"].encode(
                        "utf-8", "surrogateescape") not in data.splitlines(keepends=True):
                    problems.append(f"{entry['path']} does not hold the original {entry['key']}= line")
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
            state = st.load_state(settings)
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
    except StateError as exc:
        if "canary state" in str(exc) and st.state_path(settings).exists():
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


def _describe_rollback(settings: Settings, state: Mapping[str, Any] | None) -> str:
    if state is None:
        return (f"Roll back {settings.unit}: remove the unrecorded drop-in {st.dropin_path(settings)}, "
                "daemon-reload, restart, verify.")
    lines = [f"Roll back canary {state.get('canary_id')} ({state.get('model')}, phase {state.get('phase')}) "
             f"on {settings.unit}:"]
    for entry in reversed(state.get("touched", [])):
        lines.append(f"  restore {entry['path']} " + (f"from {entry['backup']}" if entry.get("backup") else
                                                       "(remove)"))
    lines.append("  daemon-reload, restart, verify the unit is active on the baseline")
    return "\n".join(lines)


# ---- rollback --last -------------------------------------------------------------------------------

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


# ---- promote ---------------------------------------------------------------------------------------

# A completed watch may be this much shorter than the configured duration and still count: float noise
# between two spellings of the same duration ("0.1h" and 360.0), never a real shortfall.
_DURATION_SLACK_SECONDS = 1e-3


def _watch_seconds(record: Mapping[str, Any]) -> tuple[float | None, bool]:
    """How long a completed watch lasted, and whether that comes from a legacy record's rounded hours.

    ``duration_seconds`` is exact. A record written before it existed has only ``duration_hours``, rounded
    to 4 decimals; it is taken at face value (hours x 3600, no allowance for the rounding), so a legacy watch
    whose rounded hours fall short counts as short: fail-closed, a new watch settles it.
    """
    def number(value: Any) -> float | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else None

    if "duration_seconds" in record:
        return number(record.get("duration_seconds")), False
    hours = number(record.get("duration_hours"))
    return (None if hours is None else hours * 3600.0), True


def _monitor_cleared(records: Sequence[Mapping[str, Any]], state: Mapping[str, Any],
                     min_seconds: float | None = None) -> str | None:
    """None if a monitor completed with no violation for the current stage, else why not.

    With ``min_seconds``, a completed watch shorter than that (``--duration`` cut short), or one whose
    record states no usable duration, does not count.
    """
    canary_id, model = state.get("canary_id"), state.get("model")
    start = None
    for index, record in enumerate(records):
        if record.get("canary_id") == canary_id and record.get("action") in ("canary_activated", "canary_promoted"):
            start = index
    if start is None:
        return f"the journal has no activation record for {canary_id}"
    verdict = None
    for record in records[start + 1:]:
        if record.get("canary_id") not in (None, canary_id) or record.get("canary_model") not in (None, model):
            continue
        action = record.get("action")
        if action == "monitoring_completed":
            bad = record.get("violations") or (record.get("result") not in (None, "safe"))
            verdict = "the last completed monitor reported violations" if bad else None
            if not bad and min_seconds is not None:
                verdict = _too_short(record, min_seconds) or "ok"
            elif not bad:
                verdict = "ok"
        elif action in ("monitoring_inconclusive",):
            verdict = "the last watch ended inconclusive (too little evidence)"
        elif action in ("monitoring_stopped", "rollback_failed"):
            verdict = f"the journal shows {action} after the last completed monitor"
    if verdict == "ok":
        return None
    return verdict or f"no completed monitor with no violation since stage {state.get('share')} began"


def _too_short(record: Mapping[str, Any], min_seconds: float) -> str | None:
    """Why a clean ``monitoring_completed`` record does not prove a watch of ``min_seconds``, or None."""
    seconds, legacy = _watch_seconds(record)
    if seconds is None:
        return "the last completed watch records no usable duration; watch again with 'qtsafe monitor'"
    if seconds >= min_seconds - _DURATION_SLACK_SECONDS:
        return None
    if legacy:
        return (f"the last completed watch lasted {record.get('duration_hours')!r} h by its rounded duration_hours "
                f"(a record from before duration_seconds), shorter than the configured "
                f"{format_duration(min_seconds)}; watch again with 'qtsafe monitor'")
    return (f"the last completed watch lasted {format_duration(seconds)}, shorter than the configured "
            f"{format_duration(min_seconds)}")


def promote(
    settings: Settings,
    *,
    to: float,
    reason: str,
    systemd: Systemd | None = None,
    sleep: Sleep = time.sleep,
) -> PromotionResult:
    """Raise the active canary to ``to`` (0.25, 0.5 or 1.0) after a clean monitor; 1.0 makes it the baseline."""
    systemd = systemd or Systemd(settings)

    def refused(problem: str, model: str | None = None, current: float | None = None) -> PromotionResult:
        return PromotionResult(status=Status.BLOCKED, summary=f"PROMOTION BLOCKED: {problem} (nothing changed)",
                               model=model, from_share=current, to_share=to, reason=reason, problems=(problem,))

    try:
        check_unit_name(settings.unit)
    except ConfigError as exc:
        return refused(str(exc))
    if to not in PROMOTION_STAGES:
        return refused(f"--to must be one of {', '.join(str(s) for s in PROMOTION_STAGES)}")
    if not reason or not reason.strip():
        return refused("--reason is required")
    try:
        with st.unit_lock(settings):
            state = st.load_state(settings)
            if state is None or state.get("phase") != st.PHASE_ACTIVE:
                return refused("no active canary" if state is None else f"the canary is {state.get('phase')}")
            model, current = str(state["model"]), float(state.get("share") or 0.0)
            if state.get("mode") != "dropin":
                return refused("an env-key canary cannot be promoted by stages", model, current)
            if to <= current:
                return refused(f"the canary is already at {current}", model, current)
            next_stage = min(stage for stage in PROMOTION_STAGES if stage > current)
            if to != next_stage:
                return refused(f"promotion goes one stage at a time: from {current} the next stage is {next_stage}, "
                               "each with its own clean monitor", model, current)
            why = _monitor_cleared(journal.read_records(settings), state, settings.monitor.duration)
            if why:
                return refused(why, model, current)
            weights = canary_weights(state["baseline_weights"], model, to, max_share=1.0)
            return _execute_promotion(settings, state, weights, to, reason, systemd, sleep)
    except QtsafeError as exc:
        return refused(str(exc))


def _execute_promotion(settings: Settings, state: dict[str, Any], weights: dict[str, float], to: float, reason: str,
                       systemd: Systemd, sleep: Sleep) -> PromotionResult:
    model, current = str(state["model"]), float(state["share"])
    final = to >= 1.0
    state = dict(state, phase=st.PHASE_APPLYING, step=f"promoting_to_{to}")
    if final:
        # The promoted weights move to qsc_baseline.conf; record its old bytes first so a rollback can restore them.
        base_path = st.baseline_dropin_path(settings)
        if not any(e["path"] == str(base_path) for e in state["touched"]):
            old = _read_bytes(base_path)
            entry: dict[str, Any] = {"path": str(base_path), "kind": "dropin", "backup": None, "backup_sha256": None}
            if old is not None:
                backup = _write_backup(_unique_backup(settings.backup_dir, f"{settings.unit}.d_{base_path.name}",
                                                      ".bak"), old)
                entry.update(backup=backup["path"], backup_sha256=backup["sha256"])
            state["touched"] = [*state["touched"], entry]
    st.save_state(settings, state)
    try:
        if final:
            text = render_dropin(settings, str(state["canary_id"]), weights, None, None)
            atomic_write_text(st.baseline_dropin_path(settings), text, mode=0o644)
            if st.dropin_path(settings).exists():
                st.dropin_path(settings).unlink()
            expect = _expect_weights(settings, weights, None, None)
        else:
            text = render_dropin(settings, str(state["canary_id"]), weights, model, to)
            state["dropin_sha256"] = _sha256_bytes(text.encode("utf-8"))
            st.save_state(settings, state)
            atomic_write_text(st.dropin_path(settings), text, mode=0o644)
            atomic_write_text(st.local_dropin_path(settings), text, mode=0o644)
            atomic_write_text(st.canary_weights_path(settings), _weights_file_text(weights))
            expect = _expect_weights(settings, weights, model, to)
        systemd.daemon_reload()
        systemd.restart()
        verification = _verify_unit(systemd, settings, sleep, expect_env=expect)
    except QtsafeError as exc:
        rb = _rollback_from_state(settings, state, systemd, sleep, trigger="promotion_failed",
                                  reason=f"promotion to {to} failed: {exc}", violations=[str(exc)])
        return PromotionResult(status=Status.FAIL, summary=f"PROMOTION FAILED: {exc} (rolled back to the baseline: "
                               f"{rb.status.value})", model=model, from_share=current, to_share=to, reason=reason,
                               problems=(str(exc),), weights=weights, rollback=rb)
    try:
        return _record_promotion(settings, state, weights, to, reason, systemd, verification)
    except QtsafeError as exc:
        return PromotionResult(
            status=Status.FAIL, summary=f"PROMOTION APPLIED BUT NOT RECORDED: {exc}; check 'qtsafe canary status'",
            model=model, from_share=current, to_share=to, reason=reason, problems=(str(exc),), weights=weights,
            verification=verification)


def _record_promotion(settings: Settings, state: dict[str, Any], weights: dict[str, float], to: float, reason: str,
                      systemd: Systemd, verification: dict[str, Any]) -> PromotionResult:
    model, current = str(state["model"]), float(state["share"])
    final = to >= 1.0
    git, proof, notes = _proof(systemd)
    verification.update({"git_hash": git, "journal_proof": proof, "notes": notes})
    fields: dict[str, Any] = dict(canary_id=state["canary_id"], canary_model=model, unit=settings.unit,
                                  from_stage=current, stage=to, canary_weight=to, weights=weights, reason=reason,
                                  git_hash=git, journal_proof=proof)
    if final:
        old_baseline = _read_bytes(st.baseline_weights_path(settings))
        if old_baseline is not None:
            fields["previous_baseline_backup"] = _write_backup(
                _unique_backup(settings.backup_dir, "baseline_model_weights", ".json"), old_baseline)
        atomic_write_text(st.baseline_weights_path(settings), _weights_file_text(weights))
        fields.update(baseline_updated=True, baseline_dropin=str(st.baseline_dropin_path(settings)),
                      baseline_sha256=sha256_file(st.baseline_weights_path(settings)))
        journal.append_record(settings, "canary_promoted", **fields)
        for local in (st.local_dropin_path(settings), st.canary_weights_path(settings)):
            if local.exists():
                local.unlink()
        st.clear_state(settings)
        summary = f"CANARY PROMOTED: {model} at 100% is the new baseline on {settings.unit} (verified)"
    else:
        journal.append_record(settings, "canary_promoted", **fields)
        stages = [*state.get("stages", []), {"share": to, "at": iso_ms(utc_now())}]
        st.save_state(settings, dict(state, phase=st.PHASE_ACTIVE, step="promoted", share=to,
                                     canary_weights=weights, stages=stages))
        summary = f"CANARY PROMOTED: {model} {current:.0%} -> {to:.0%} on {settings.unit} (verified; monitor again)"
    return PromotionResult(status=Status.PASS, summary=summary, model=model, from_share=current, to_share=to,
                           reason=reason, weights=weights, baseline_updated=final, verification=verification)


# ---- status ----------------------------------------------------------------------------------------

def canary_status(settings: Settings, *, systemd: Systemd | None = None, journal_lines: int = 5) -> StatusResult:
    """What is active, since when, weights, heartbeat and the last journal records; never changes anything."""
    try:
        check_unit_name(settings.unit)
    except ConfigError as exc:
        return StatusResult(status=Status.FAIL, summary=f"CANARY STATUS REFUSED: {exc}", unit=settings.unit,
                            active=False, phase=None, canary=None, unit_state=None, dropin_present=False,
                            baseline_weights=None, live_weights=None, heartbeat=None, heartbeat_age_seconds=None,
                            problems=(str(exc),), repair="set unit to the engine's systemd unit name "
                            "(qtsafe.toml, QTSAFE_UNIT or --unit)", journal_tail=())
    systemd = systemd or Systemd(settings)
    problems: list[str] = []
    repair = f"run '{rollback_command(settings)}' to restore the baseline"
    try:
        state = st.load_state(settings)
    except StateError as exc:
        state = None
        problems.append(str(exc))
    dropin = st.dropin_path(settings).exists()
    try:
        records = journal.read_records(settings)
    except StateError as exc:
        records = []
        problems.append(f"journal unreadable: {exc}")
    unit_state: str | None = None
    live: dict[str, float] | None = None
    env: dict[str, str] = {}
    try:
        unit_state = systemd.is_active()
        env = systemd.environment()
        if settings.weights_variable in env:
            live = parse_weights_json(env[settings.weights_variable], where=settings.weights_variable)
    except QtsafeError as exc:
        problems.append(f"cannot read the live unit: {exc}")
    baseline = _read_baseline_file(settings)
    heartbeat, age, hb_problem = st.read_heartbeat(settings)
    tail = tuple(records[-journal_lines:]) if journal_lines else ()
    canary: dict[str, Any] | None = None
    phase = state.get("phase") if state else None

    def result(status: Status, summary: str, fix: str | None) -> StatusResult:
        return StatusResult(
            status=status, summary=summary, unit=settings.unit, active=phase == st.PHASE_ACTIVE, phase=phase,
            canary=canary, unit_state=unit_state, dropin_present=dropin, baseline_weights=baseline,
            live_weights=live, heartbeat=heartbeat, heartbeat_age_seconds=None if age is None else round(age, 1),
            problems=tuple(problems), repair=fix, journal_tail=tail)

    if state is not None:
        canary = {k: state.get(k) for k in ("canary_id", "model", "mode", "share", "env_key", "activated_at",
                                            "started_at", "step", "stages", "canary_weights", "last_error")}
    if problems and state is None and not dropin and any("canary state" in p for p in problems):
        return result(Status.FAIL, f"CANARY STATE INCONSISTENT: {problems[0]}", repair)
    if state is None:
        if dropin:
            problems.insert(0, f"{st.dropin_path(settings)} exists but no canary is recorded")
            return result(Status.FAIL, "CANARY STATE INCONSISTENT: a canary drop-in with no state or journal record",
                          repair)
        if env.get(st.MARKER_MODEL):
            problems.insert(0, f"the unit's environment carries {st.MARKER_MODEL}={env[st.MARKER_MODEL]} "
                            "but no drop-in or state exists (daemon-reload pending?)")
            return result(Status.FAIL, "CANARY STATE INCONSISTENT: canary markers in the environment", repair)
        if problems:
            # No canary on record, but the live unit could not be read: that is not a clean bill of health.
            return result(Status.WAIT, f"NO CANARY RECORDED, but {problems[0]}",
                          "check systemctl and the unit name (qtsafe doctor)")
        return result(Status.PASS, f"NO CANARY: {settings.unit} runs its baseline", None)
    if phase != st.PHASE_ACTIVE:
        problems.insert(0, f"a canary was interrupted while {phase} (last step {state.get('step')}, "
                        f"pid {state.get('pid')}, since {state.get('started_at')})"
                        + (f": {state['last_error']}" if state.get("last_error") else ""))
        return result(Status.FAIL, f"CANARY INTERRUPTED: {state.get('model')} {phase} at {state.get('step')}", repair)
    # Active: it must be consistent with the drop-in, the journal and the live unit.
    if not any(r.get("canary_id") == state.get("canary_id") and r.get("action") == "canary_activated"
               for r in records):
        problems.append(f"no canary_activated journal record for {state.get('canary_id')}")
    if state.get("mode") == "dropin":
        data = _read_bytes(st.dropin_path(settings))
        if data is None:
            problems.append(f"{st.dropin_path(settings)} is missing (removed by hand?)")
        elif state.get("dropin_sha256") and _sha256_bytes(data) != state.get("dropin_sha256"):
            problems.append(f"{st.dropin_path(settings)} differs from what qtsafe wrote (edited by hand?)")
        if env and env.get(st.MARKER_MODEL) != state.get("model"):
            problems.append(f"the unit's environment has {st.MARKER_MODEL}={env.get(st.MARKER_MODEL)!r}, "
                            f"expected {state.get('model')!r}")
    if unit_state is not None and unit_state != "active":
        problems.append(f"{settings.unit} is {unit_state}")
    if problems:
        return result(Status.FAIL, f"CANARY STATE INCONSISTENT: {problems[0]}", repair)
    last = next((r for r in reversed(records) if r.get("canary_id") in (None, state.get("canary_id"))
                 and r.get("action", "").startswith("monitoring_")), None)
    what = f"{state.get('model')} at {float(state.get('share') or 0):.0%}" if state.get("mode") == "dropin" \
        else f"{state.get('env_key')} for {state.get('model')}"
    if last is not None and last.get("action") == "monitoring_completed" and \
            _monitor_cleared(records, state, settings.monitor.duration) is None:
        return result(Status.WAIT, f"CANARY ACTIVE: {what} since {state.get('activated_at')}; monitoring completed "
                      "with no violation, awaiting promote or rollback",
                      "promote with 'qtsafe canary promote --to <stage> --reason ...' or roll back")
    hb_model = (heartbeat or {}).get("canary_model")
    max_age = settings.monitor.heartbeat_max_age
    if last is not None and last.get("action") == "monitoring_stopped":
        problems.append(f"the monitor stopped at {last.get('timestamp')} ({last.get('reason')})")
    elif hb_problem or age is None:
        problems.append(hb_problem or "monitor heartbeat has no readable age")
    elif age > max_age:
        problems.append(f"monitor heartbeat is stale: {age:.0f}s old (limit {max_age:g}s)")
    elif hb_model not in (None, state.get("model")):
        problems.append(f"monitor heartbeat is for {hb_model!r}, not {state.get('model')!r}")
    elif _predates(str((heartbeat or {}).get("timestamp")), state.get("activated_at")):
        problems.append("monitor heartbeat predates this canary")
    if problems:
        return result(Status.WAIT, f"CANARY UNMONITORED: {what} since {state.get('activated_at')}; {problems[0]}",
                      "start the monitor ('qtsafe monitor') or roll back")
    return result(Status.PASS, f"CANARY MONITORED: {what} since {state.get('activated_at')}, heartbeat "
                  f"{age:.0f}s ago", None)


def _predates(stamp: str, activated_at: Any) -> bool:
    try:
        return bool(activated_at) and parse_utc(stamp) < parse_utc(str(activated_at))
    except QtsafeError:
        return True


def _read_baseline_file(settings: Settings) -> dict[str, float] | None:
    try:
        data = st.baseline_weights_path(settings).read_text(encoding="utf-8")
        return parse_weights_json(data, where=str(st.baseline_weights_path(settings)))
    except (OSError, InputError):
        return None


__all__ = [
    "ACTIVATION_STEPS", "ROLLBACK_STEPS", "ActivationResult", "PromotionResult", "RollbackResult", "StatusResult",
    "activate", "canary_status", "env_backups", "promote", "render_dropin", "rollback", "rollback_command",
    "rollback_last",
]
