"""The canary state file, the per-unit lock, the runbook file names and the monitor heartbeat.

``data/qsc_canary_state.json`` exists only while a canary is being applied, is active, or is being rolled
back; with no canary it is absent. Each lifecycle step rewrites it atomically *before* touching the live
system, so a SIGKILL between any two steps leaves a file that says what was in flight and what to undo.

For the monitor (issue 4): :func:`active_canary` returns the active canary (model, activated_at, stage,
baseline and canary weights); the monitor writes :func:`heartbeat_path` every tick with
:func:`write_heartbeat`, and ``canary status`` judges it against ``settings.monitor.heartbeat_max_age``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import CanaryStateError, LockHeldError, StateError, WriteError
from qtsafe.fsio import atomic_write_json, fsync_dir, locked
from qtsafe.timeutil import iso, parse_utc, utc_now

DROPIN_NAME = "qsc_canary.conf"
#: Written only by a promotion to 1.0: the promoted weights as the unit's new baseline. It sorts before
#: ``qsc_canary.conf``, so a later canary's drop-in still overrides it.
BASELINE_DROPIN_NAME = "qsc_baseline.conf"
MARKER_MODEL = "QSC_CANARY_MODEL"
MARKER_WEIGHT = "QSC_CANARY_WEIGHT"

PHASE_APPLYING = "applying"
PHASE_ACTIVE = "active"
PHASE_ROLLING_BACK = "rolling_back"


STATE_VERSION = 1


# ---- the typed record ------------------------------------------------------------------------------

def _bad(where: str, name: str, problem: str) -> CanaryStateError:
    return CanaryStateError(f"canary state {where}: field '{name}' {problem}; 'qtsafe canary rollback' repairs it")


_KINDS: dict[str, tuple[type, ...]] = {
    "a string": (str,), "a number": (int, float), "an integer": (int,), "an object": (dict,), "a list": (list,),
}


def _take(data: Mapping[str, Any], name: str, kind: str, where: str, *, nullable: bool = False,
          required: bool = True) -> Any:
    """``data[name]`` checked against ``kind``; a missing or mistyped field names itself in the error."""
    if name not in data:
        if required:
            raise _bad(where, name, "is missing")
        return None
    value = data[name]
    if value is None and (nullable or not required):
        return None
    if isinstance(value, bool) or not isinstance(value, _KINDS[kind]):
        got = "null" if value is None else type(value).__name__
        raise _bad(where, name, f"must be {kind}{' or null' if nullable else ''}, not {got}")
    return value


def _list_of_objects(data: Mapping[str, Any], name: str, where: str) -> tuple[dict[str, Any], ...]:
    items = _take(data, name, "a list", where)
    if not all(isinstance(item, dict) for item in items):
        raise _bad(where, name, "must be a list of objects")
    return tuple(items)


def _weights(data: Mapping[str, Any], name: str, where: str) -> dict[str, float] | None:
    value = _take(data, name, "an object", where, nullable=True)
    if value is not None and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        raise _bad(where, name, "must map model names to numbers")
    return value


@dataclasses.dataclass(frozen=True)
class TouchedFile:
    """One live file a canary step changed, and how rollback puts it back (an entry of ``touched``)."""

    #: The live file (a drop-in under ``<unit>.d/`` or the env file).
    path: str
    #: ``"dropin"`` (rollback then needs a daemon-reload) or ``"env_file"``.
    kind: str
    #: Verified copy of the file's bytes before qtsafe touched it; None: it did not exist, rollback removes it.
    backup: str | None
    #: SHA-256 of ``backup``; rollback refuses a backup that no longer matches.
    backup_sha256: str | None
    #: SHA-256 of what qtsafe wrote (absent for the baseline drop-in a promotion records before writing it).
    written_sha256: str | None = None
    #: Env-file entries only: the ``KEY`` of the edited line, and the line before and after the edit.
    key: str | None = None
    old_line: str | None = None
    new_line: str | None = None
    #: Keys this version does not know, written back unchanged.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    _OPTIONAL = ("written_sha256", "key", "old_line", "new_line")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TouchedFile:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {"path": _take(data, "path", "a string", where), "kind": _take(data, "kind", "a string", where),
                  "backup": _take(data, "backup", "a string", where, nullable=True),
                  "backup_sha256": _take(data, "backup_sha256", "a string", where, nullable=True)}
        values.update({name: _take(data, name, "a string", where, required=False) for name in cls._OPTIONAL})
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "backup": self.backup,
                               "backup_sha256": self.backup_sha256}
        # Optional keys are written only when set: entries that never had them stay as they were.
        out.update({name: getattr(self, name) for name in self._OPTIONAL if getattr(self, name) is not None})
        return {**out, **self.extra}


@dataclasses.dataclass(frozen=True)
class CanaryState:
    """The canary in flight, as ``data/qsc_canary_state.json`` records it (one key per field).

    Frozen: a step builds the next state with :meth:`replace` and saves it before it touches the system.
    """

    #: What is going on: ``applying`` (activation or promotion), ``active``, or ``rolling_back``.
    phase: str
    #: The last step completed (``backed_up``, ``dropin_written``, ``journaled``, ``promoting_to_0.25``, ...).
    step: str
    #: ``<UTC stamp>_<model>``: ties the state to its journal records.
    canary_id: str
    #: ``dropin`` (weights through a drop-in) or ``env_key`` (one edited env-file line).
    mode: str
    #: The systemd unit the canary runs on.
    unit: str
    #: The canary model.
    model: str
    #: The model's current share of the ensemble; None in env-key mode.
    share: float | None
    #: ``{"share", "at"}`` for the activation and each promotion; the monitor watches from the last one.
    stages: tuple[dict[str, Any], ...]
    #: Env-key mode: the edited key; None in drop-in mode.
    env_key: str | None
    #: The live weights before the canary (what rollback verifies), and where they were read.
    baseline_weights: dict[str, float] | None
    baseline_source: str | None
    #: The weights the canary applied.
    canary_weights: dict[str, float] | None
    #: Per-variable SHA-256 of the unit's Environment before the canary (rollback compares against it).
    baseline_environment: dict[str, str]
    #: When the activation began, and when it was verified and journaled (None until then).
    started_at: str
    activated_at: str | None
    #: Process and person that wrote it.
    pid: int
    operator: str
    #: Every live file changed, in the order changed (rollback undoes them in reverse).
    touched: tuple[TouchedFile, ...]
    #: Directories the canary created (rollback removes them if empty).
    created_dirs: tuple[str, ...]
    #: The backups written before anything changed (``{"of", "path", "sha256"}``).
    backups: tuple[dict[str, Any], ...]
    #: The gate's cutover and summary.
    cutover_ts: str | None
    gate_summary: str
    #: SHA-256 of the drop-in qtsafe wrote (status tells a hand-edited drop-in apart); None in env-key mode.
    dropin_sha256: str | None
    #: File format version (1) and when the file was last written; both are stamped by :func:`save_state`.
    version: int = STATE_VERSION
    updated_at: str | None = None
    #: The engine's git commit when the canary was verified (only after activation; may be null).
    git_hash: str | None = None
    #: Set by a rollback: what triggered it and why, and the error that stopped it.
    rollback_trigger: str | None = None
    rollback_reason: str | None = None
    last_error: str | None = None
    #: Which of the four keys above the file carries (``git_hash`` may be carried as null).
    optional_present: frozenset[str] = frozenset()
    #: Keys this version does not know, written back unchanged.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    _OPTIONAL = ("git_hash", "rollback_trigger", "rollback_reason", "last_error")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> CanaryState:
        """Check every field's presence and type; a problem is a CanaryStateError naming the field."""
        t = functools.partial(_take, data, where=where)
        touched = _list_of_objects(data, "touched", where)
        dirs = _take(data, "created_dirs", "a list", where)
        if not all(isinstance(d, str) for d in dirs):
            raise _bad(where, "created_dirs", "must be a list of paths")
        env = _take(data, "baseline_environment", "an object", where)
        if not all(isinstance(v, str) for v in env.values()):
            raise _bad(where, "baseline_environment", "must map variable names to digests")
        values: dict[str, Any] = dict(
            phase=t("phase", "a string"), step=t("step", "a string"), canary_id=t("canary_id", "a string"),
            mode=t("mode", "a string"), unit=t("unit", "a string"), model=t("model", "a string"),
            share=t("share", "a number", nullable=True), stages=_list_of_objects(data, "stages", where),
            env_key=t("env_key", "a string", nullable=True), baseline_weights=_weights(data, "baseline_weights", where),
            baseline_source=t("baseline_source", "a string", nullable=True),
            canary_weights=_weights(data, "canary_weights", where), baseline_environment=env,
            started_at=t("started_at", "a string"), activated_at=t("activated_at", "a string", nullable=True),
            pid=t("pid", "an integer"), operator=t("operator", "a string"),
            touched=tuple(TouchedFile.from_dict(e, f"{where} touched[{i}]") for i, e in enumerate(touched)),
            created_dirs=tuple(dirs), backups=_list_of_objects(data, "backups", where),
            cutover_ts=t("cutover_ts", "a string", nullable=True), gate_summary=t("gate_summary", "a string"),
            dropin_sha256=t("dropin_sha256", "a string", nullable=True), version=t("version", "an integer"),
            updated_at=t("updated_at", "a string", required=False),
            git_hash=t("git_hash", "a string", nullable=True, required=False),
            **{name: t(name, "a string", required=False) for name in cls._OPTIONAL[1:]},
        )
        known = {f.name for f in dataclasses.fields(cls)} - {"optional_present", "extra"}
        return cls(**values, optional_present=frozenset(n for n in cls._OPTIONAL if n in data),
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The file's keys: every field, optional ones only when carried, unknown keys as they were."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("optional_present", "extra", "touched") or \
                    (f.name in self._OPTIONAL and f.name not in self.optional_present):
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["touched"] = [entry.to_dict() for entry in self.touched]
        return {**out, **self.extra}

    def replace(self, **changes: Any) -> CanaryState:
        """A copy with ``changes``; setting an optional field makes the file carry it."""
        present = self.optional_present | {name for name in changes if name in self._OPTIONAL}
        return dataclasses.replace(self, optional_present=present, **changes)


# ---- runbook paths -------------------------------------------------------------------------------

def state_path(settings: Settings) -> Path:
    return settings.data_dir / "qsc_canary_state.json"


def baseline_weights_path(settings: Settings) -> Path:
    return settings.data_dir / "baseline_model_weights.json"


def canary_weights_path(settings: Settings) -> Path:
    return settings.data_dir / "qsc_canary_weights.json"


def local_dropin_path(settings: Settings) -> Path:
    return settings.data_dir / "systemd_overrides" / DROPIN_NAME


def dropin_dir(settings: Settings) -> Path:
    """``<systemd_dir>/<unit>.d``; the unit name is checked here too, so no path built from it leaves systemd_dir."""
    return settings.systemd_dir / f"{check_unit_name(settings.unit)}.d"


def dropin_path(settings: Settings) -> Path:
    return dropin_dir(settings) / DROPIN_NAME


def baseline_dropin_path(settings: Settings) -> Path:
    return dropin_dir(settings) / BASELINE_DROPIN_NAME


def heartbeat_path(settings: Settings) -> Path:
    """Where the monitor writes its heartbeat each tick: ``data/qsc_monitor_heartbeat.json``."""
    return settings.data_dir / "qsc_monitor_heartbeat.json"


def lock_path(settings: Settings) -> Path:
    safe_unit = re.sub(r"[^A-Za-z0-9_.@-]", "_", settings.unit)
    directory = Path(settings.canary.lock_dir) if settings.canary.lock_dir else settings.data_dir
    return directory / f".qsc_canary.{safe_unit}.lock"


# ---- lock ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def unit_lock(settings: Settings) -> Iterator[None]:
    """Hold the per-unit lock; a second qtsafe process gets LockHeldError at once instead of waiting."""
    try:
        with locked(lock_path(settings), blocking=False):
            yield
    except StateError as exc:
        # fsio.locked says "held" by chaining the BlockingIOError of a non-blocking flock (typed, not its text).
        if isinstance(exc.__cause__, BlockingIOError):
            raise LockHeldError(
                f"another qtsafe canary command is running for {settings.unit} (lock {lock_path(settings)})"
            ) from exc
        raise


# ---- state file ------------------------------------------------------------------------------------

def read_state(settings: Settings) -> CanaryState | None:
    """The typed state, or None when no canary is in flight. A corrupt or malformed file is a CanaryStateError."""
    path = state_path(settings)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CanaryStateError(f"cannot read canary state {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CanaryStateError(
            f"canary state {path} is not valid JSON ({exc.msg}); 'qtsafe canary rollback' repairs it") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION or "phase" not in data:
        raise CanaryStateError(f"canary state {path} has an unknown format")
    return CanaryState.from_dict(data, where=str(path))


def load_state(settings: Settings) -> dict[str, Any] | None:
    """The state as a plain dict (checked like :func:`read_state`), or None.

    The raw view, for tests and tools that compare files; the library reads :class:`CanaryState`.
    """
    state = read_state(settings)
    return None if state is None else state.to_dict()


def save_state(settings: Settings, state: CanaryState | Mapping[str, Any]) -> None:
    """Write ``state`` atomically, stamping ``version`` and ``updated_at``.

    A mapping is accepted (and checked field by field) for the monitor's tests; kept for them, remove when
    they hand in CanaryState.
    """
    if not isinstance(state, CanaryState):
        state = CanaryState.from_dict(dict(state, version=STATE_VERSION), where="to be saved")
    data = dataclasses.replace(state, version=STATE_VERSION, updated_at=iso(utc_now())).to_dict()
    atomic_write_json(state_path(settings), data)


def clear_state(settings: Settings) -> None:
    """Remove the state file (no canary in flight) and fsync the directory so the removal is durable."""
    path = state_path(settings)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WriteError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    fsync_dir(path.parent)


@dataclasses.dataclass(frozen=True)
class ActiveCanary:
    """The active canary as the monitor needs it."""

    canary_id: str
    model: str
    stage: float
    activated_at: str | None
    mode: str
    baseline_weights: dict[str, float] | None
    canary_weights: dict[str, float] | None


def active_canary(settings: Settings) -> ActiveCanary | None:
    """The fully activated canary, or None (no canary, or one still being applied / rolled back)."""
    state = read_state(settings)
    if state is None or state.phase != PHASE_ACTIVE:
        return None
    return ActiveCanary(
        canary_id=state.canary_id, model=state.model, stage=float(state.share or 0.0),
        activated_at=state.activated_at, mode=state.mode, baseline_weights=state.baseline_weights,
        canary_weights=state.canary_weights,
    )


# ---- heartbeat -------------------------------------------------------------------------------------

def write_heartbeat(settings: Settings, **fields: Any) -> Path:
    """Write the monitor heartbeat (``timestamp`` is set here; pass canary_id, canary_model, checks, ...)."""
    record = {"timestamp": iso(utc_now()), "pid": os.getpid(), **fields}
    return atomic_write_json(heartbeat_path(settings), record)


def read_heartbeat(settings: Settings) -> tuple[dict[str, Any] | None, float | None, str | None]:
    """``(heartbeat, age_seconds, problem)``; a missing or unreadable heartbeat gives a problem, not an error."""
    path = heartbeat_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None, f"no monitor heartbeat at {path}"
    except (OSError, json.JSONDecodeError) as exc:
        return None, None, f"monitor heartbeat {path} unreadable: {exc}"
    if not isinstance(data, dict) or not isinstance(data.get("timestamp"), str):
        return None, None, f"monitor heartbeat {path} has no timestamp"
    try:
        age = (utc_now() - parse_utc(data["timestamp"])).total_seconds()
    except Exception as exc:  # noqa: BLE001 - any bad timestamp is a problem to report, not a crash
        return data, None, f"monitor heartbeat timestamp unreadable: {exc}"
    return data, age, None
