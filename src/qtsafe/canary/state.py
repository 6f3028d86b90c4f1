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
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import CanaryStateError, LockHeldError, StateError, WriteError
from qtsafe.fsio import atomic_write_json, fsync_dir, locked
from qtsafe.timeutil import iso, parse_utc, utc_now

STATE_VERSION = 1
DROPIN_NAME = "qsc_canary.conf"
#: Written only by a promotion to 1.0: the promoted weights as the unit's new baseline. It sorts before
#: ``qsc_canary.conf``, so a later canary's drop-in still overrides it.
BASELINE_DROPIN_NAME = "qsc_baseline.conf"
MARKER_MODEL = "QSC_CANARY_MODEL"
MARKER_WEIGHT = "QSC_CANARY_WEIGHT"

PHASE_APPLYING = "applying"
PHASE_ACTIVE = "active"
PHASE_ROLLING_BACK = "rolling_back"


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

def load_state(settings: Settings) -> dict[str, Any] | None:
    """The state dict, or None when no canary is in flight. A corrupt file is a CanaryStateError, never ignored."""
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
    return data


def save_state(settings: Settings, state: dict[str, Any]) -> None:
    state = dict(state)
    state["version"] = STATE_VERSION
    state["updated_at"] = iso(utc_now())
    atomic_write_json(state_path(settings), state)


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
    state = load_state(settings)
    if state is None or state.get("phase") != PHASE_ACTIVE:
        return None
    return ActiveCanary(
        canary_id=str(state.get("canary_id")), model=str(state.get("model")),
        stage=float(state.get("share") or 0.0), activated_at=state.get("activated_at"),
        mode=str(state.get("mode")), baseline_weights=state.get("baseline_weights"),
        canary_weights=state.get("canary_weights"),
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
