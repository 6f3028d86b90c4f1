"""Promotion: raise an active canary one stage after a clean, full-length monitor; at 1.0 it is the baseline.

To 0.5 and 1.0 the canary must also be shown not worse than the baseline ensemble's direction by more than
``[outcomes] margin`` on the same events since activation (qtsafe.outcome_evidence); to 0.25 the clean monitor
is enough, as before. Too few resolved outcomes is WAIT (exit 3) with the count still needed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from qtsafe.canary import journal
from qtsafe.canary import state as st
from qtsafe.canary.dropin import render_dropin
from qtsafe.canary.rollback import RollbackResult, _rollback_from_state
from qtsafe.canary.state import CanaryState, TouchedFile
from qtsafe.canary.steps import (
    Sleep,
    _expect_weights,
    _proof,
    _read_bytes,
    _sha256_bytes,
    _unique_backup,
    _verify_unit,
    _weights_file_text,
    _write_backup,
)
from qtsafe.canary.systemd import Systemd
from qtsafe.canary.weights import PROMOTION_STAGES, canary_weights
from qtsafe.config import Settings, check_unit_name
from qtsafe.errors import ConfigError, QtsafeError
from qtsafe.fsio import atomic_write_text, sha256_file
from qtsafe.results import Result
from qtsafe.status import Status
from qtsafe.timeutil import format_duration, iso_ms, parse_utc, utc_now

if TYPE_CHECKING:
    from qtsafe.outcome_evidence import OutcomeEvidence

#: Stages that need outcome evidence beyond a clean monitor (0.25 keeps the monitor-only rule).
OUTCOME_STAGES = (0.5, 1.0)

#: Reads the canary's outcome evidence since activation: (settings, state, now) -> OutcomeEvidence.
OutcomeCheck = Callable[[Settings, CanaryState, Any], "OutcomeEvidence"]


@dataclasses.dataclass(frozen=True)
class PromotionResult(Result):
    """Outcome of ``canary promote``."""

    model: str | None
    from_share: float | None
    to_share: float
    reason: str
    problems: tuple[str, ...] = ()
    weights: dict[str, float] | None = None
    baseline_updated: bool = False
    verification: dict[str, Any] = dataclasses.field(default_factory=dict)
    rollback: RollbackResult | None = None
    outcomes: dict[str, Any] | None = None  # OutcomeEvidence.to_dict() when the stage needed it


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


def _monitor_cleared(records: Sequence[Mapping[str, Any]], state: CanaryState,
                     min_seconds: float | None = None) -> str | None:
    """None if a monitor completed with no violation for the current stage, else why not.

    With ``min_seconds``, a completed watch shorter than that (``--duration`` cut short), or one whose
    record states no usable duration, does not count.
    """
    canary_id, model = state.canary_id, state.model
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
    return verdict or f"no completed monitor with no violation since stage {state.share} began"


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
    open_source: Callable[..., Any] | None = None,
    prices: str | None = None,
    outcome_check: OutcomeCheck | None = None,
) -> PromotionResult:
    """Raise the active canary to ``to`` (0.25, 0.5 or 1.0) after a clean monitor; 1.0 makes it the baseline.

    To 0.5 and 1.0 the canary's outcomes since activation must also pass the non-inferiority rule: telemetry
    from ``open_source(settings)`` (default: the configured Redis stream), prices from the stream or from
    ``prices`` (market data). ``outcome_check`` replaces that read (tests).
    """
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
            state = st.read_state(settings)
            if state is None or state.phase != st.PHASE_ACTIVE:
                return refused("no active canary" if state is None else f"the canary is {state.phase}")
            model, current = state.model, float(state.share or 0.0)
            if state.mode != "dropin":
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
            figures = None
            if to in OUTCOME_STAGES:
                check = outcome_check or _outcomes_since_activation(open_source, prices)
                evidence = check(settings, state, utc_now())
                held = _outcome_refusal(evidence, model, current, to, reason)
                if held is not None:
                    return held
                figures = evidence.to_dict()
            weights = canary_weights(state.baseline_weights or {}, model, to, max_share=1.0)
            result = _execute_promotion(settings, state, weights, to, reason, systemd, sleep)
            return dataclasses.replace(result, outcomes=figures) if figures is not None else result
    except QtsafeError as exc:
        return refused(str(exc))


def _outcomes_since_activation(open_source: Callable[..., Any] | None, prices: str | None) -> OutcomeCheck:
    """The default outcome check: read the telemetry since the canary's activation, score it (reads only)."""

    def check(settings: Settings, state: CanaryState, now: Any) -> OutcomeEvidence:
        from qtsafe.evidence import gather
        from qtsafe.outcome_evidence import outcome_evidence_for
        from qtsafe.telemetry import open_source as default_open_source
        from qtsafe.telemetry.window import resolve_window

        since = state.activated_at or state.started_at
        if not since:
            raise ConfigError("the canary state records no activation time: cannot read its outcomes")
        window = resolve_window(parse_utc(since))
        source = (open_source or default_open_source)(settings)
        telemetry = gather(source, window).telemetry
        return outcome_evidence_for(settings, telemetry, canary=state.model, prices=prices,
                                    now_ms=int(now.timestamp() * 1000))

    return check


def _outcome_refusal(evidence: OutcomeEvidence, model: str | None, current: float, to: float,
                     reason: str) -> PromotionResult | None:
    """None when the canary is shown not worse than the baseline; else the WAIT or BLOCKED result (nothing
    changed), with the figures."""
    verdict = evidence.verdict
    if verdict is not None and verdict.status is Status.PASS:
        return None
    if verdict is None:  # pragma: no cover - outcome_evidence always judges when given a canary
        problem, status = "no outcome verdict for the canary", Status.BLOCKED
    elif verdict.status is Status.WAIT:
        problem, status = f"outcomes since activation: {verdict.message}", Status.WAIT
    else:
        problem, status = f"outcomes since activation: {model} is {verdict.message}", Status.BLOCKED
    word = "PROMOTION WAITING" if status is Status.WAIT else "PROMOTION BLOCKED"
    return PromotionResult(status=status, summary=f"{word} ({current} -> {to}): {problem} (nothing changed)",
                           model=model, from_share=current, to_share=to, reason=reason, problems=(problem,),
                           outcomes=evidence.to_dict())


def _execute_promotion(settings: Settings, state: CanaryState, weights: dict[str, float], to: float, reason: str,
                       systemd: Systemd, sleep: Sleep) -> PromotionResult:
    model, current = state.model, float(state.share or 0.0)
    final = to >= 1.0
    state = state.replace(phase=st.PHASE_APPLYING, step=f"promoting_to_{to}")
    if final:
        # The promoted weights move to qsc_baseline.conf; record its old bytes first so a rollback can restore them.
        base_path = st.baseline_dropin_path(settings)
        if not any(e.path == str(base_path) for e in state.touched):
            old = _read_bytes(base_path)
            entry = TouchedFile(path=str(base_path), kind="dropin", backup=None, backup_sha256=None)
            if old is not None:
                backup = _write_backup(_unique_backup(settings.backup_dir, f"{settings.unit}.d_{base_path.name}",
                                                      ".bak"), old)
                entry = dataclasses.replace(entry, backup=backup["path"], backup_sha256=backup["sha256"])
            state = state.replace(touched=(*state.touched, entry))
    st.save_state(settings, state)
    try:
        if final:
            text = render_dropin(settings, state.canary_id, weights, None, None)
            atomic_write_text(st.baseline_dropin_path(settings), text, mode=0o644)
            if st.dropin_path(settings).exists():
                st.dropin_path(settings).unlink()
            expect = _expect_weights(settings, weights, None, None)
        else:
            text = render_dropin(settings, state.canary_id, weights, model, to)
            state = state.replace(dropin_sha256=_sha256_bytes(text.encode("utf-8")))
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


def _record_promotion(settings: Settings, state: CanaryState, weights: dict[str, float], to: float, reason: str,
                      systemd: Systemd, verification: dict[str, Any]) -> PromotionResult:
    model, current = state.model, float(state.share or 0.0)
    final = to >= 1.0
    git, proof, notes = _proof(systemd)
    verification.update({"git_hash": git, "journal_proof": proof, "notes": notes})
    fields: dict[str, Any] = dict(canary_id=state.canary_id, canary_model=model, unit=settings.unit,
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
        stages = (*state.stages, {"share": to, "at": iso_ms(utc_now())})
        st.save_state(settings, state.replace(phase=st.PHASE_ACTIVE, step="promoted", share=to,
                                              canary_weights=weights, stages=stages))
        summary = f"CANARY PROMOTED: {model} {current:.0%} -> {to:.0%} on {settings.unit} (verified; monitor again)"
    return PromotionResult(status=Status.PASS, summary=summary, model=model, from_share=current, to_share=to,
                           reason=reason, weights=weights, baseline_updated=final, verification=verification)

