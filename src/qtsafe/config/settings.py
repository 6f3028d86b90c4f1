"""The settings: one frozen dataclass per section and ``Settings`` over them, each rule with its default, the
direction that loosens it and its meaning in the field metadata (reports, the journal and docs/configuration.md
read it from there)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from qtsafe.errors import ConfigError

# Which way loosens a threshold: "min" rules fail below the value (lowering loosens), "max" rules
# fail above it (raising loosens). Reports and the journal list every threshold loosened past its default.
# A "subset" rule (a list of judged fields) loosens when a default member is dropped from it.
_LOOSER_WHEN = {"min": "lower", "max": "higher", "subset": "fewer"}


def _rule(default: Any, kind: str | None, doc: str) -> Any:
    return dataclasses.field(default=default, metadata={"kind": kind, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The quality rules from the operators' runbooks (DESIGN.md's table)."""

    min_events_collection: int = _rule(100, "min", "evaluated events per model for a collection-mode gate")
    min_events_canary: int = _rule(200, "min", "evaluated events per model for a canary-mode gate")
    recent_window: int = _rule(200, "max", "events per model in the recent window, judged beside the whole window")
    majority_max: float = _rule(0.70, "max", "largest share any one action may take")
    std_min: float = _rule(0.05, "min", "smallest confidence std before the output counts as collapsed")
    p10_p90_min: float = _rule(0.12, "min", "smallest P90-P10 confidence spread")
    constant_std: float = _rule(0.01, "min", "confidence std below this is a constant output")
    hold_dead_zone_max: float = _rule(0.85, "max", "largest HOLD share when confidence sits in the dead zone")
    dead_zone_low: float = _rule(0.4, "max", "lower edge of the HOLD dead zone")
    dead_zone_high: float = _rule(0.6, "min", "upper edge of the HOLD dead zone")
    dead_zone_fraction: float = _rule(0.5, "max", "share of confidences inside the dead zone that counts as 'mostly'")
    invalid_max_fraction: float = _rule(0.0, "max", "share of votes with NaN/Inf/negative/non-numeric/null confidence")
    above_one_max_fraction: float = _rule(0.0, "max", "share of votes with confidence above 1 (calibration defect)")
    bad_vote_max_fraction: float = _rule(0.0, "max", "share of votes with an unknown action or a malformed entry")
    degenerate_action_max: float = _rule(0.95, "max", "one action above this share with low variance is degenerate")
    degenerate_std: float = _rule(0.05, "min", "confidence std counted as low variance for the degenerate check")
    inactive_max_fraction: float = _rule(0.5, "max", "largest share of events a judged model may be inactive in")
    agreement_min: float = _rule(0.55, "min", "lowest healthy ensemble agreement")
    agreement_max: float = _rule(0.80, "max", "highest healthy ensemble agreement")
    hard_disagree_max: float = _rule(0.20, "max", "largest share of events with a BUY and a SELL among voters")
    presence_min: float = _rule(0.5, "min", "smallest share of the window's events a judged model must appear in "
                                "(active or not)")
    evidence_alpha: float = _rule(0.05, "min", "one-sided alpha of the bounds on the gate's and scoreboard's "
                                  "proportion rules (one look)")
    relative_alpha: float = _rule(0.01, "min", "one-sided alpha of the relative rule (hard disagreement with the "
                                  "others' consensus)")
    relative_margin_others: float = _rule(0.10, "max", "relative rule: points above the majority of the other "
                                          "models' upper bound")
    relative_margin_baseline: float = _rule(0.10, "max", "relative rule: points above the model's own upper bound "
                                            "before the cutover")
    relative_margin_no_baseline: float = _rule(0.20, "max", "relative rule without a usable baseline: points above "
                                               "the others")
    relative_min_sided: int = _rule(30, "max", "relative rule: fewest events where both the model and the others "
                                    "took a side before it is judged")


DEFAULT_NUMERIC_FIELDS = (
    "confidence",
    "consensus_count",
    "total_models",
    "position_size_usd",
    "leverage",
    "entry_price",
    "stop_loss",
    "take_profit",
    "atr_value",
    "volatility_factor",
    "exchange_divergence",
    "funding_rate",
)


@dataclasses.dataclass(frozen=True)
class FeatureSanity:
    """Rules for ``feature-sanity``."""

    min_events: int = _rule(50, "min", "trade.intent events needed before features are judged")
    flatline_max_fraction: float = _rule(0.30, "max", "largest share of judged features that may be flatlined")
    flatline_rel_tol: float = _rule(1e-9, "min", "std at or below this times max(|median|, 1) is a flatline")
    missing_max_fraction: float = _rule(0.5, "max", "a feature missing from more than this share of events fails")
    numeric_fields: tuple[str, ...] = _rule(DEFAULT_NUMERIC_FIELDS, "subset", "payload fields judged as features")
    expected_constant: tuple[str, ...] = _rule((), None, "fields the producer fills with fixed values today")


@dataclasses.dataclass(frozen=True)
class Monitor:
    """Rules for ``monitor``."""

    duration: float = _rule(6 * 3600.0, "min", "seconds the canary is watched")
    interval: float = _rule(30.0, "max", "seconds between checks")
    window_events: int = _rule(200, "max", "events per model in the rolling window (a larger one dilutes a collapse)")
    stall_limit: float = _rule(600.0, "max", "seconds without a new trade.intent before telemetry counts as lost")
    max_consecutive_errors: int = _rule(3, "max", "Redis errors on this many ticks in a row is a violation")
    max_total_errors: int = _rule(5, "max", "Redis errors on this many ticks in all is a violation")
    heartbeat_max_age: float = _rule(180.0, "max", "seconds after which the watchdog treats the monitor as dead")
    end_grace: float = _rule(300.0, "max", "seconds past the end the monitor keeps checking for a clean final check")
    alpha: float = _rule(0.05, "max", "false-alarm budget of a whole watch, spread over its planned checks")
    history_events: int = _rule(1000, "max", "recent events kept to measure dependence (regimes outlast the window) "
                                "and to judge the canary against the others")
    agreement_batch: float = _rule(900.0, "max", "seconds of stream time per batch of the whole-watch agreement rule "
                                   "(batch means; longer than a market regime)")


@dataclasses.dataclass(frozen=True)
class Canary:
    """Settings for the canary lifecycle."""

    share: float = _rule(0.10, None, "weight given to the canary model")
    settle_seconds: float = _rule(5.0, None, "seconds to wait after a restart before verifying the unit")
    restart_timeout: float = _rule(90.0, None, "seconds a systemctl call may take")
    recheck_seconds: float = _rule(5.0, None, "seconds between the first and the second is-active check")
    command_timeout: float = _rule(30.0, None, "seconds a systemctl query (is-active, show) or journalctl may take")
    lock_dir: str = _rule("", None, "directory of the per-unit lock file (empty: <base_dir>/data)")


MAX_OUTCOME_HORIZON = 4 * 3600.0  # the longest horizon build-dataset labels


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """Outcome scoring (what the price did next) and the promotion rule built on it (docs/verdicts.md)."""

    horizon: float = _rule(300.0, None, "seconds after a vote at which its direction is judged (up to 4 h)")
    margin: float = _rule(0.03, "max", "how much less often than the baseline ensemble the canary may be right")
    confidence: float = _rule(0.95, "min", "one-sided confidence of the non-inferiority bounds")
    min_resolved: int = _rule(30, "min", "paired outcomes (canary and baseline both resolved) before a verdict")

    def __post_init__(self) -> None:
        if not 1.0 <= self.horizon <= MAX_OUTCOME_HORIZON:
            raise ConfigError(f"outcomes.horizon must be within 1..{MAX_OUTCOME_HORIZON:g} seconds, got {self.horizon}")
        if not 0.0 < self.margin < 1.0:
            raise ConfigError(f"outcomes.margin must be within (0, 1), got {self.margin}")
        if not 0.5 < self.confidence < 1.0:
            raise ConfigError(f"outcomes.confidence must be within (0.5, 1), got {self.confidence}")
        if self.min_resolved < 1:
            raise ConfigError(f"outcomes.min_resolved must be at least 1, got {self.min_resolved}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a command may need. Paths in the runbook layout are relative to ``base_dir``."""

    base_dir: Path = Path(".")
    redis_url: str = "redis://127.0.0.1:6379/0"
    stream: str = "quantum:stream:trade.intent"
    redis_timeout: float = 5.0
    page_size: int = 1000
    read_workers: int = 2
    parallel_min_entries: int = 200_000
    unit: str = "quantum-ai-engine.service"
    env_file: Path = Path("/etc/quantum/ai-engine.env")
    systemd_dir: Path = Path("/etc/systemd/system")
    backup_dir: Path = Path("/opt/quantum/backups/model_activations")
    weights_variable: str = "ENSEMBLE_WEIGHTS"
    weights_file: str = ""
    engine_repo: str = ""
    systemctl: str = "systemctl"
    journalctl: str = "journalctl"
    charts: bool = True
    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    feature_sanity: FeatureSanity = dataclasses.field(default_factory=FeatureSanity)
    monitor: Monitor = dataclasses.field(default_factory=Monitor)
    canary: Canary = dataclasses.field(default_factory=Canary)
    outcomes: Outcomes = dataclasses.field(default_factory=Outcomes)
    config_file: str = ""

    @property
    def reports_dir(self) -> Path:
        return self.base_dir / "reports" / "safety"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def journal_path(self) -> Path:
        return self.logs_dir / "qsc_canary.jsonl"

    def loosened(self) -> list[dict[str, Any]]:
        """Every rule set looser than its default, for reports and the audit journal."""
        out: list[dict[str, Any]] = []
        for section in _SECTIONS:
            current = getattr(self, section)
            default = type(current)()
            for fld in dataclasses.fields(current):
                kind = fld.metadata.get("kind")
                if kind is None:
                    continue
                now, was = getattr(current, fld.name), getattr(default, fld.name)
                if kind == "subset":
                    # Judging fewer fields is looser, even when others were added in their place.
                    dropped = [name for name in was if name not in now]
                    if dropped:
                        out.append({"rule": f"{section}.{fld.name}", "default": list(was), "value": list(now),
                                    "looser_when": _LOOSER_WHEN[kind], "dropped": dropped})
                elif (kind == "min" and now < was) or (kind == "max" and now > was):
                    out.append(
                        {"rule": f"{section}.{fld.name}", "default": was, "value": now,
                         "looser_when": _LOOSER_WHEN[kind]}
                    )
        return out

    def thresholds_table(self) -> list[dict[str, Any]]:
        """Rows of (rule, value, default, meaning) for the thresholds every report prints."""
        rows = []
        defaults = Thresholds()
        for fld in dataclasses.fields(self.thresholds):
            rows.append(
                {"rule": fld.name, "value": getattr(self.thresholds, fld.name),
                 "default": getattr(defaults, fld.name), "doc": fld.metadata.get("doc", "")}
            )
        return rows


_SECTIONS = ("thresholds", "feature_sanity", "monitor", "canary", "outcomes")
_SECTION_TYPES: dict[str, type] = {
    "thresholds": Thresholds, "feature_sanity": FeatureSanity, "monitor": Monitor, "canary": Canary,
    "outcomes": Outcomes,
}
