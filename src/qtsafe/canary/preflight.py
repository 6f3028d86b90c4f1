"""Activation preflight: every check before a canary touches anything (names, state, unit, weights, gate)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from qtsafe.canary import envfile
from qtsafe.canary import state as st
from qtsafe.canary.dropin import render_dropin
from qtsafe.canary.steps import _read_bytes, _writability_problems
from qtsafe.canary.systemd import Systemd
from qtsafe.canary.weights import MAX_CANARY_SHARE, canary_weights, check_model_name, parse_weights_json
from qtsafe.config import Settings
from qtsafe.errors import InputError, QtsafeError, StateError, SystemdError, WriteError
from qtsafe.status import Status
from qtsafe.timeutil import file_stamp, iso, parse_utc


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


class GateOutcome(Protocol):
    """What activation reads from the quality gate's result (``qtsafe.gate.GateResult``)."""

    status: Status
    summary: str
    mode: str

    def model_verdict(self, name: str) -> tuple[bool, int] | None: ...


def _default_gate() -> Callable[..., Any]:
    from qtsafe.gate import run_quality_gate_after  # lazy: the canary package must import without the gate

    return run_quality_gate_after


def _default_open_source() -> Callable[..., Any]:
    from qtsafe.telemetry import open_source

    return open_source


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
    current = st.read_state(settings)
    if current is not None:
        raise StateError(
            f"a canary is already {current.phase} for {settings.unit} "
            f"(model {current.model}, since {current.activated_at or current.started_at}); "
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
        result: GateOutcome = run_gate(settings, source, mode="canary", after=cutover, models=judged,
                                       write_report=write_report, require_fresh=True)
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
    if result.mode != "canary":
        raise InputError(f"quality gate ran in {result.mode!r} mode, not canary mode")
    verdict = result.model_verdict(model)
    if verdict is None:
        known = f" (baseline has {', '.join(sorted(baseline))})" if baseline else ""
        raise InputError(f"unknown model {model!r}: the quality gate judged no telemetry for it{known}")
    passed, events = verdict
    needed = settings.thresholds.min_events_canary
    if not passed:
        raise InputError(f"quality gate passed overall but {model} did not: {gate_summary}")
    if events < needed:
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

