"""Outcome evidence of one window: each model's hit rate and Brier score, and the canary against the baseline.

Glue between the reader's columns (``Telemetry.symbol``/``entry_price``/``event_ms``) and the pure statistics in
:mod:`qtsafe.checks.outcomes` and :mod:`qtsafe.checks.paired`. The baseline ensemble's direction on an event is
the plurality of the *other* voting models (``checks.consensus.leave_one_out``), so the canary's own vote never
counts on both sides. Prices come from the stream itself (each symbol's later ``entry_price``) or, with
``--prices``, from market data in the formats ``build-dataset`` reads (the bar's ``open`` at its timestamp).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from qtsafe.checks.consensus import NO_VOTE, leave_one_out, vote_matrix
from qtsafe.checks.outcomes import (
    AWAITING,
    NO_PRICE,
    NOT_SCORED,
    PENDING,
    ModelOutcome,
    PriceSeries,
    Realised,
    hits,
    realised_direction,
    score_model,
)
from qtsafe.checks.paired import NonInferiority, PairedComparison, non_inferiority, paired_comparison
from qtsafe.errors import InputError, QtsafeError
from qtsafe.telemetry.columns import NO_SYMBOL

if TYPE_CHECKING:
    from qtsafe.config import Outcomes, Settings
    from qtsafe.telemetry.columns import Telemetry

BASELINE_CONSENSUS = "the consensus of the other voting models"

#: The one comparison `canary promote` (one look, ``[outcomes] confidence``) and the monitor (every check, at
#: 1 - the check's share of the watch's alpha) both make; docs/verdicts.md, "One stated comparison".
CANARY_COMPARISON = (
    "the canary's BUY/SELL direction against the baseline ensemble's direction (the leave-one-out consensus "
    "of the other voting models on the same event), paired on the events where both are resolved: not worse "
    "by more than [outcomes] margin, with at least [outcomes] min_resolved pairs"
)


@dataclasses.dataclass(frozen=True)
class OutcomeEvidence:
    """Outcomes of one window: per-model records and, with a canary, the paired non-inferiority verdict."""

    horizon_seconds: float
    prices: str  # "stream" or the market-data source
    events: int
    directions: dict[str, int]  # realised-direction status counts over the events (STATUS_NAMES)
    models: dict[str, ModelOutcome]
    canary: str | None = None
    baseline: str = BASELINE_CONSENSUS
    paired: PairedComparison | None = None
    verdict: NonInferiority | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon_seconds": self.horizon_seconds, "prices": self.prices, "events": self.events,
            "directions": dict(self.directions), "models": {n: m.to_dict() for n, m in self.models.items()},
            "canary": self.canary, "baseline": self.baseline,
            "paired": self.paired.to_dict() if self.paired is not None else None,
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
        }


def _realised(telemetry: Telemetry, horizon_ms: int, now_ms: int | None, prices: PriceSeries | None) -> Realised:
    """Realised directions with events that name no symbol kept out of every price search (NO_PRICE)."""
    missing = telemetry.symbol == NO_SYMBOL
    # realised_direction needs non-negative codes: park symbol-less events on a code of their own with no price.
    symbols = np.where(missing, len(telemetry.symbol_names), telemetry.symbol).astype(np.int64)
    price = np.where(missing, np.nan, telemetry.entry_price)
    realised = realised_direction(telemetry.event_ms, symbols, price, horizon_ms, now_ms=now_ms, prices=prices)
    status = realised.status.copy()
    status[missing & ((status == AWAITING) | (status == PENDING))] = NO_PRICE
    return Realised(status, realised.move, realised.horizon_ms)


def outcome_evidence(
    telemetry: Telemetry,
    rules: Outcomes,
    *,
    canary: str | None = None,
    prices: PriceSeries | None = None,
    prices_label: str = "stream",
    now_ms: int | None = None,
) -> OutcomeEvidence:
    """Score every model's BUY/SELL votes over ``rules.horizon``; with ``canary``, pair it with the baseline.

    Pure: arrays in, dataclass out. ``prices`` must use the telemetry's symbol codes (see :func:`load_prices`).
    ``now_ms`` (default: the newest time in the data) decides which votes are still pending. A canary absent
    from the telemetry is an InputError: there is nothing to compare.
    """
    horizon_ms = int(round(rules.horizon * 1000))
    realised = _realised(telemetry, horizon_ms, now_ms, prices)
    models = {name: score_model(name, cols.event_idx, cols.action, cols.conf, realised,
                                confidence_level=0.95)
              for name, cols in telemetry.models.items()}
    evidence = OutcomeEvidence(rules.horizon, prices_label, telemetry.evaluated, realised.counts(), models)
    if canary is None:
        return evidence
    if canary not in telemetry.models or telemetry.models[canary].n_valid == 0:
        raise InputError(f"no valid votes of {canary!r} in the telemetry: its outcomes cannot be compared")
    canary_hits, baseline_hits = paired_hits(telemetry, realised, canary)
    paired = paired_comparison(canary_hits, baseline_hits)
    verdict = canary_against_baseline(paired, rules, confidence=rules.confidence)
    return dataclasses.replace(evidence, canary=canary, paired=paired, verdict=verdict)


def canary_against_baseline(comparison: PairedComparison, rules: Outcomes, *, confidence: float) -> NonInferiority:
    """The verdict of :data:`CANARY_COMPARISON`: PASS (not worse than the baseline by more than the margin),
    FAIL (worse by more, established) or WAIT, with ``rules.margin`` and ``rules.min_resolved``.

    ``confidence`` is the caller's, because the looks differ: ``canary promote`` looks once
    (``rules.confidence``); the monitor looks at every check and spends its share of the watch's alpha
    (1 - ``Watch.alpha_now()``).
    """
    return non_inferiority(comparison, margin=rules.margin, confidence=confidence, min_pairs=rules.min_resolved)


def baseline_direction(evaluated: int, columns: Mapping[str, Any], canary: str) -> np.ndarray:
    """Per event, the baseline ensemble's direction against ``canary``: the plurality action of the other
    voting models (``leave_one_out``), NO_VOTE where there is none (a tie, fewer than two others)."""
    if canary not in columns:
        return np.full(evaluated, NO_VOTE, dtype=np.int8)
    series = leave_one_out(vote_matrix(evaluated, columns))
    return series.consensus[series.names.index(canary)]


def paired_hits(telemetry: Telemetry, realised: Realised, canary: str) -> tuple[np.ndarray, np.ndarray]:
    """Per event: the canary's hit code and the baseline ensemble's (the others' consensus), -1 where none."""
    baseline = hits(baseline_direction(telemetry.evaluated, telemetry.models, canary), realised.status)
    mine = np.full(telemetry.evaluated, NOT_SCORED, dtype=np.int8)
    cols = telemetry.models[canary]
    mine[cols.event_idx] = hits(cols.action, realised.status[cols.event_idx])
    return mine, baseline


def load_prices(text: str, symbol_names: tuple[str, ...]) -> tuple[PriceSeries, str]:
    """Market data for ``--prices`` (``sqlite:PATH``, ``csv:DIR`` or ``parquet:DIR``, as build-dataset reads),
    coded like the telemetry's symbols. Symbols the telemetry does not name are left out; events of a symbol
    the market data lacks stay awaiting. Needs the dataset extra (MissingDependencyError, exit 2, names it)."""
    from qtsafe.extras import require

    sources = require("qtsafe.dataset.sources", "--prices")
    try:
        spec = sources.parse_source(text)
    except QtsafeError:
        spec = None
    if spec is None or spec.kind == "synthetic":
        raise InputError(f"--prices: expected sqlite:PATH, csv:DIR or parquet:DIR, got {text!r}")
    loaded = sources.load_source(spec, (), days=0, interval_s=None, seed=0)
    index = {name: code for code, name in enumerate(symbol_names)}
    codes, times, values = [], [], []
    for symbol, candles in loaded.candles.items():
        if symbol not in index:
            continue
        codes.append(np.full(len(candles), index[symbol], dtype=np.int64))
        times.append(np.asarray(candles.ts, dtype=np.int64) // 1_000_000)  # ns -> ms
        values.append(np.asarray(candles.open, dtype=np.float64))  # the price at the bar's own timestamp
    if not codes:
        raise InputError(f"--prices {spec.label}: no market data for any symbol in the telemetry "
                         f"({', '.join(symbol_names[:5]) or 'none'})")
    series = PriceSeries(np.concatenate(codes), np.concatenate(times), np.concatenate(values))
    return series, spec.label


def outcome_evidence_for(settings: Settings, telemetry: Telemetry, *, canary: str | None = None,
                         prices: str | None = None, now_ms: int | None = None) -> OutcomeEvidence:
    """:func:`outcome_evidence` with the ``[outcomes]`` settings and, when ``prices`` is given, market data."""
    series, label = (None, "stream") if not prices else load_prices(prices, telemetry.symbol_names)
    return outcome_evidence(telemetry, settings.outcomes, canary=canary, prices=series, prices_label=label,
                            now_ms=now_ms)


def window_outcomes(settings: Settings, telemetry: Telemetry, *, canary: str | None = None,
                    prices: str | None = None) -> dict[str, Any]:
    """The outcomes section of a gate or scoreboard report: informational, never a verdict.

    ``canary`` is paired against the baseline only when the window has it; a computation that cannot be done on
    this window is a one-line note. ``--prices`` that cannot be read is an error (the operator asked for it).
    """
    if prices:
        series, label = load_prices(prices, telemetry.symbol_names)
    else:
        series, label = None, "stream"
    canary = canary if canary in telemetry.models else None
    try:
        found = outcome_evidence(telemetry, settings.outcomes, canary=canary, prices=series, prices_label=label)
    except (QtsafeError, ValueError) as exc:
        return {"note": f"outcomes not scored: {' '.join(str(exc).split())[:200]}"}
    return found.to_dict()


__all__ = ["BASELINE_CONSENSUS", "CANARY_COMPARISON", "OutcomeEvidence", "baseline_direction",
           "canary_against_baseline", "load_prices", "outcome_evidence", "outcome_evidence_for", "paired_hits",
           "window_outcomes"]
