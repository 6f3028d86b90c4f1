"""The watch's outcome state: what the price did after each vote, folded in batch by batch since activation.

Each check's new events join a bounded *pending* buffer (time, symbol name, start price, every model's BUY/SELL
vote and confidence, the canary's vote and the baseline ensemble's direction, i.e. the leave-one-out consensus
of the other voters). A pending event resolves against the same symbol's first valid ``entry_price`` at or after
t + H among the events read since (as :func:`qtsafe.checks.outcomes.realised_direction` does over a window);
until then it is never guessed. Resolved outcomes go into counters: per model hits, scored outcomes and Brier
sums, and the paired cells of the canary against the baseline, plus the last ``history`` values of each series
so its dependence (n_eff) can be measured. The cost of a fold grows with the batch and the buffer (events of
the last H + the stall margin), never with the stream.

An event awaiting its end price for longer than ``stall_ms`` past t + H (a symbol the producer stopped
publishing) is dropped and counted as *expired*; the buffer is also capped at ``MAX_PENDING`` events (the
oldest dropped, counted). Events with no symbol or no usable start price can never be scored: they are counted
as unscorable at once. The verdict on the canary is :func:`qtsafe.outcome_evidence.canary_against_baseline`,
the comparison ``canary promote`` makes too (docs/verdicts.md, "One stated comparison").
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from qtsafe.checks.consensus import NO_VOTE
from qtsafe.checks.dependence import effective_sample_size
from qtsafe.checks.outcomes import ModelOutcome, model_outcome
from qtsafe.checks.paired import NonInferiority, PairedComparison, pair_differences, paired_from_counts
from qtsafe.monitor.rolling import pack, unpack
from qtsafe.outcome_evidence import BASELINE_CONSENSUS, CANARY_COMPARISON, baseline_direction, canary_against_baseline
from qtsafe.status import Status
from qtsafe.telemetry.columns import NO_SYMBOL
from qtsafe.votes import BUY, SELL

if TYPE_CHECKING:
    from qtsafe.config import Outcomes
    from qtsafe.telemetry.columns import Telemetry

MAX_PENDING = 100_000  # events; at the producer's rate a 5-minute horizon holds a few hundred
_TIME_BITS = 42  # ms offsets of the search key (139 years); the symbol code sits above them

# Pending-buffer columns (one row per event with a sided vote and a usable start price) and their dtypes.
_COLUMNS = {"ms": np.int64, "sym": np.int32, "price": np.float64, "canary": np.int8, "base": np.int8}


def _scaled_n_eff(recent: np.ndarray, total: int) -> float:
    """Effective size of ``total`` outcomes, the dependence measured on the last ones kept (all of them while
    no more than ``history`` have resolved, so then it is the series' own n_eff)."""
    kept = int(recent.shape[0])
    if total == 0 or kept == 0:
        return float(total)
    return total * effective_sample_size(recent) / kept


@dataclasses.dataclass
class Tally:
    """One model's resolved outcomes since the outcome state began, and its counts of unresolved votes."""

    votes: int = 0  # valid votes folded in
    sided: int = 0  # BUY or SELL
    scored: int = 0
    hits: int = 0
    unscorable: int = 0  # no symbol or start price, or a flat move
    expired: int = 0  # dropped from the buffer, never resolved
    capped: int = 0
    brier_sum: float = 0.0
    brier_sq_sum: float = 0.0
    recent_hits: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int8))
    recent_errors: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.float64))

    def to_state(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("recent")}
        data["recent_hits"] = pack(self.recent_hits)
        data["recent_errors"] = pack(self.recent_errors)
        return data

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Tally:
        hits = unpack(data["recent_hits"], np.int8).reshape((-1,))
        errors = unpack(data["recent_errors"], np.float64).reshape((-1,))
        return cls(votes=int(data["votes"]), sided=int(data["sided"]), scored=int(data["scored"]),
                   hits=int(data["hits"]), unscorable=int(data["unscorable"]), expired=int(data["expired"]),
                   capped=int(data["capped"]), brier_sum=float(data["brier_sum"]),
                   brier_sq_sum=float(data["brier_sq_sum"]), recent_hits=hits, recent_errors=errors)


class RollingOutcomes:
    """Outcome counters of one watch (see the module docstring); ``fold`` each batch, then judge or report."""

    def __init__(self, canary: str, horizon_ms: int, stall_ms: int, history: int, since_event: int = 0) -> None:
        if horizon_ms < 1:
            raise ValueError("the horizon must be at least 1 ms")
        self.canary = canary
        self.horizon_ms = int(horizon_ms)
        self.stall_ms = int(stall_ms)
        self.history = max(int(history), 1)
        self.since_event = since_event  # the watch's event count when outcomes began (0, or a resume of old state)
        self.events = 0
        self.latest_ms: int | None = None
        self.symbols: list[str] = []  # symbol names by code (codes are per batch in the reader)
        self.names: list[str] = []  # model columns of the buffer
        self.tallies: dict[str, Tally] = {}
        self.cells = [0, 0, 0, 0]  # both, canary_only, baseline_only, neither
        self.recent_diffs = np.empty(0, np.int8)
        self.dropped = 0  # events pushed out of a full buffer
        self.pending = {key: np.empty(0, dtype) for key, dtype in _COLUMNS.items()}
        self.actions = np.empty((0, 0), np.int8)  # (pending, models): BUY/SELL, NO_VOTE otherwise
        # float32: the producer's confidences carry ~4 digits, and half the bytes keep the saved state small.
        self.conf = np.empty((0, 0), np.float32)

    # -- folding -------------------------------------------------------------------------------
    def fold(self, telemetry: Telemetry) -> None:
        """Add one batch of new events (in stream order) and resolve whatever its prices settle."""
        n = telemetry.evaluated
        if n == 0:
            return
        self.events += n
        self.latest_ms = int(telemetry.event_ms[-1]) if self.latest_ms is None else max(
            self.latest_ms, int(telemetry.event_ms[-1]))
        codes = self._symbol_codes(telemetry)
        price = np.asarray(telemetry.entry_price, dtype=np.float64)
        usable = (codes >= 0) & np.isfinite(price) & (price > 0)
        actions, conf = self._batch_votes(telemetry, n)
        sided = actions != NO_VOTE
        for j in np.flatnonzero((sided & ~usable[:, None]).any(axis=0)):
            self.tallies[self.names[j]].unscorable += int(np.count_nonzero(sided[:, j] & ~usable))
        keep = usable & sided.any(axis=1)
        if self.canary in self.names:
            mine = actions[:, self.names.index(self.canary)]
            base = baseline_direction(n, telemetry.models, self.canary)
            base = np.where((base == BUY) | (base == SELL), base, np.int8(NO_VOTE)).astype(np.int8)
        else:
            mine = base = np.full(n, NO_VOTE, np.int8)
        self._append({"ms": telemetry.event_ms[keep], "sym": codes[keep], "price": price[keep],
                      "canary": mine[keep], "base": base[keep]}, actions[keep], conf[keep])
        self._resolve(telemetry.event_ms[usable], codes[usable], price[usable])
        self._expire()

    def _symbol_codes(self, telemetry: Telemetry) -> np.ndarray:
        index = {name: code for code, name in enumerate(self.symbols)}
        for name in telemetry.symbol_names:
            if name not in index:
                index[name] = len(self.symbols)
                self.symbols.append(name)
        # The batch's codes index its own sorted names; the last slot maps NO_SYMBOL (-1) to itself.
        lookup = np.array([index[name] for name in telemetry.symbol_names] + [NO_SYMBOL], dtype=np.int32)
        return lookup[np.asarray(telemetry.symbol, dtype=np.int64)] if telemetry.symbol.shape[0] else \
            np.full(telemetry.evaluated, NO_SYMBOL, np.int32)

    def _batch_votes(self, telemetry: Telemetry, n: int) -> tuple[np.ndarray, np.ndarray]:
        for name in sorted(telemetry.models):
            if name not in self.tallies:
                self.tallies[name] = Tally()
                self.names.append(name)
                self.actions = np.hstack([self.actions, np.full((self.actions.shape[0], 1), NO_VOTE, np.int8)])
                self.conf = np.hstack([self.conf, np.zeros((self.conf.shape[0], 1), np.float32)])
        actions = np.full((n, len(self.names)), NO_VOTE, np.int8)
        conf = np.zeros((n, len(self.names)), np.float32)
        for name, cols in telemetry.models.items():
            j = self.names.index(name)
            act = np.asarray(cols.action, dtype=np.int8)
            side = (act == BUY) | (act == SELL)
            tally = self.tallies[name]
            tally.votes += int(act.shape[0])
            tally.sided += int(np.count_nonzero(side))
            idx = np.asarray(cols.event_idx, dtype=np.int64)[side]
            actions[idx, j] = act[side]
            conf[idx, j] = np.asarray(cols.conf, dtype=np.float64)[side]
        return actions, conf

    def _append(self, rows: dict[str, np.ndarray], actions: np.ndarray, conf: np.ndarray) -> None:
        self.pending = {k: np.concatenate([self.pending[k], rows[k].astype(_COLUMNS[k])]) for k in _COLUMNS}
        self.actions = np.concatenate([self.actions, actions])
        self.conf = np.concatenate([self.conf, conf])

    def _keep(self, mask: np.ndarray) -> None:
        self.pending = {k: v[mask] for k, v in self.pending.items()}
        self.actions, self.conf = self.actions[mask], self.conf[mask]

    def _resolve(self, ref_ms: np.ndarray, ref_sym: np.ndarray, ref_price: np.ndarray) -> None:
        """Resolve pending events against this batch's usable prices: for each, the first price of its
        symbol at or after t + H. Earlier batches held none (the event would have resolved there)."""
        p = self.pending
        if p["ms"].shape[0] == 0 or ref_ms.shape[0] == 0:
            return
        origin = int(min(int(p["ms"].min()), int(ref_ms.min())))
        ref_keys = (ref_sym.astype(np.int64) << _TIME_BITS) + (ref_ms.astype(np.int64) - origin)
        order = np.argsort(ref_keys, kind="stable")  # stable: among equal times, the first in the stream
        keys = ref_keys[order]
        due = (p["sym"].astype(np.int64) << _TIME_BITS) + (p["ms"] + self.horizon_ms - origin)
        at = np.searchsorted(keys, due, side="left")
        inside = np.minimum(at, keys.shape[0] - 1)
        found = (at < keys.shape[0]) & (ref_sym[order][inside] == p["sym"])
        if not found.any():
            return
        end = ref_price[order][inside[found]]
        move = np.log(end / p["price"][found])
        self._score(found, move)
        self._keep(~found)

    def _score(self, found: np.ndarray, move: np.ndarray) -> None:
        flat = move == 0.0
        up = move > 0.0
        actions, conf = self.actions[found], self.conf[found]
        for j, name in enumerate(self.names):
            act = actions[:, j]
            sided = act != NO_VOTE
            if not sided.any():
                continue
            tally = self.tallies[name]
            tally.unscorable += int(np.count_nonzero(sided & flat))
            scored = sided & ~flat
            y = ((act[scored] == BUY) == up[scored]).astype(np.int8)
            c = conf[scored, j].astype(np.float64)
            errors = np.square(np.minimum(c, 1.0) - y)
            tally.scored += int(y.shape[0])
            tally.hits += int(y.sum())
            tally.capped += int(np.count_nonzero(c > 1.0))
            tally.brier_sum += float(errors.sum())
            tally.brier_sq_sum += float(np.square(errors).sum())
            tally.recent_hits = np.concatenate([tally.recent_hits, y])[-self.history:]
            tally.recent_errors = np.concatenate([tally.recent_errors, errors])[-self.history:]
        mine, base = self.pending["canary"][found], self.pending["base"][found]
        paired = (mine != NO_VOTE) & (base != NO_VOTE) & ~flat
        c_hit = (mine[paired] == BUY) == up[paired]
        b_hit = (base[paired] == BUY) == up[paired]
        for k, count in enumerate((c_hit & b_hit, c_hit & ~b_hit, ~c_hit & b_hit, ~c_hit & ~b_hit)):
            self.cells[k] += int(np.count_nonzero(count))
        self.recent_diffs = np.concatenate([self.recent_diffs, pair_differences(c_hit, b_hit)])[-self.history:]

    def _expire(self) -> None:
        """Drop what can no longer be expected to resolve (no price of its symbol for H + the stall margin)
        and keep the buffer within MAX_PENDING; both counted per model, never scored."""
        if self.latest_ms is None or self.pending["ms"].shape[0] == 0:
            return
        keep = self.pending["ms"] + self.horizon_ms + self.stall_ms >= self.latest_ms
        overflow = int(np.count_nonzero(keep)) - MAX_PENDING
        if overflow > 0:
            kept = np.flatnonzero(keep)
            keep[kept[:overflow]] = False  # the oldest go first
            self.dropped += overflow
        if keep.all():
            return
        gone = self.actions[~keep] != NO_VOTE
        for j, name in enumerate(self.names):
            self.tallies[name].expired += int(np.count_nonzero(gone[:, j]))
        self._keep(keep)

    # -- figures -------------------------------------------------------------------------------
    def pending_votes(self, name: str) -> int:
        """The model's BUY/SELL votes still waiting for their end price."""
        if name not in self.names:
            return 0
        return int(np.count_nonzero(self.actions[:, self.names.index(name)] != NO_VOTE))

    def comparison(self) -> PairedComparison:
        """The canary against the baseline on every resolved pair so far."""
        both, canary_only, baseline_only, neither = self.cells
        return paired_from_counts(both, canary_only, baseline_only, neither,
                                  _scaled_n_eff(self.recent_diffs, sum(self.cells)))

    def model(self, name: str, confidence_level: float = 0.95) -> ModelOutcome:
        t = self.tallies[name]
        return model_outcome(
            name, votes=t.votes, sided_votes=t.sided, pending=self.pending_votes(name),
            unscorable=t.unscorable + t.expired, scored=t.scored, hits=t.hits, brier_sum=t.brier_sum,
            brier_sq_sum=t.brier_sq_sum, n_eff=_scaled_n_eff(t.recent_hits, t.scored),
            n_eff_errors=_scaled_n_eff(t.recent_errors, t.scored), capped=t.capped,
            confidence_level=confidence_level)

    def verdict(self, rules: Outcomes, confidence: float) -> NonInferiority:
        return canary_against_baseline(self.comparison(), rules, confidence=confidence)

    def violations(self, rules: Outcomes, *, alpha: float) -> list[str]:
        """The monitor's outcome rule: the canary established worse than the baseline by more than the margin,
        at one-sided confidence 1 - ``alpha`` (the check's share of the watch's alpha). WAIT and PASS never fire."""
        both, canary_only, baseline_only, neither = self.cells
        pairs = both + canary_only + baseline_only + neither
        # The upper bound is never below the estimate: an estimate not beyond the margin cannot FAIL.
        if alpha <= 0.0 or pairs < rules.min_resolved or (canary_only - baseline_only) / pairs >= -rules.margin:
            return []
        verdict = self.verdict(rules, 1.0 - alpha)
        if verdict.status is not Status.FAIL:
            return []
        cmp = self.comparison()
        return [f"{self.canary}: right on {cmp.canary_rate * 100:.1f} % of {cmp.pairs} resolved outcomes vs the "
                f"others' consensus {cmp.baseline_rate * 100:.1f} % (difference {verdict.difference * 100:+.1f} pts, "
                f"bound {verdict.high * 100:+.1f} pts, margin {rules.margin * 100:.1f} %): worse than the baseline "
                "ensemble"]

    def report(self, rules: Outcomes, confidence: float) -> dict[str, Any]:
        """The Outcomes section of the monitor's reports (the shape of ``OutcomeEvidence.to_dict()``, plus the
        monitor's own counts and the confidence the rule uses)."""
        cmp = self.comparison()
        verdict = canary_against_baseline(cmp, rules, confidence=confidence)
        return {
            "horizon_seconds": self.horizon_ms / 1000, "prices": "stream", "events": self.events,
            "since_event": self.since_event, "models": {n: self.model(n).to_dict() for n in sorted(self.names)},
            "canary": self.canary, "baseline": BASELINE_CONSENSUS, "comparison": CANARY_COMPARISON,
            "paired": cmp.to_dict(), "verdict": verdict.to_dict(), "confidence": confidence,
            "awaiting_limit_seconds": (self.horizon_ms + self.stall_ms) / 1000, "dropped": self.dropped,
            "expired": sum(t.expired for t in self.tallies.values()),
        }

    # -- saved state ---------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        rows = int(self.pending["ms"].shape[0])
        origin = int(self.pending["ms"].min()) if rows else 0
        return {
            "canary": self.canary, "horizon_ms": self.horizon_ms, "stall_ms": self.stall_ms, "history": self.history,
            "since_event": self.since_event, "events": self.events, "latest_ms": self.latest_ms,
            "symbols": list(self.symbols), "names": list(self.names),
            "tallies": {name: t.to_state() for name, t in self.tallies.items()}, "cells": list(self.cells),
            "recent_diffs": pack(self.recent_diffs), "dropped": self.dropped, "rows": rows,
            # Times as int32 offsets from the oldest pending event (the buffer spans hours, not weeks).
            "ms_origin": origin,
            "pending": {k: pack((v - origin).astype(np.int32) if k == "ms" else v) for k, v in self.pending.items()},
            "actions": pack(self.actions), "conf": pack(self.conf),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> RollingOutcomes:
        new = cls(str(data["canary"]), int(data["horizon_ms"]), int(data["stall_ms"]), int(data["history"]),
                  int(data["since_event"]))
        new.events = int(data["events"])
        new.latest_ms = None if data["latest_ms"] is None else int(data["latest_ms"])
        new.symbols = [str(s) for s in data["symbols"]]
        new.names = [str(s) for s in data["names"]]
        new.tallies = {name: Tally.from_state(t) for name, t in data["tallies"].items()}
        if set(new.tallies) != set(new.names):
            raise ValueError("outcome state: model columns and tallies disagree")
        new.cells = [int(x) for x in data["cells"]]
        new.recent_diffs = unpack(data["recent_diffs"], np.int8).reshape((-1,))
        new.dropped = int(data["dropped"])
        rows, models = int(data["rows"]), len(new.names)
        new.pending = {k: unpack(data["pending"][k], np.int32 if k == "ms" else dtype).reshape((rows,))
                       .astype(dtype) for k, dtype in _COLUMNS.items()}
        new.pending["ms"] += int(data["ms_origin"])
        new.actions = unpack(data["actions"], np.int8).reshape((rows, models))
        new.conf = unpack(data["conf"], np.float32).reshape((rows, models))
        return new


def outcomes_for(settings_outcomes: Outcomes, *, canary: str, stall_seconds: float, history: int,
                 since_event: int = 0) -> RollingOutcomes:
    """A fresh outcome state with the ``[outcomes]`` horizon and the monitor's stall limit as the margin."""
    return RollingOutcomes(canary, int(round(settings_outcomes.horizon * 1000)), int(round(stall_seconds * 1000)),
                           history, since_event)


def restore(saved: Any, fresh: RollingOutcomes) -> RollingOutcomes:
    """The saved outcome state when it is for this watch (same canary and horizon), else ``fresh``: a state file
    written before outcomes existed starts them afresh (the report says from which event). A section that is
    there but cannot be read is a ValueError, never a silent restart: the evidence since activation would be
    lost, and with it a canary already established worse (the monitor refuses the state file, one line)."""
    if saved is None:
        return fresh
    if not isinstance(saved, dict):
        raise ValueError("the outcome section is not an object")
    try:
        state = RollingOutcomes.from_state(saved)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the outcome section cannot be read ({type(exc).__name__}: {exc})") from exc
    if state.canary != fresh.canary or state.horizon_ms != fresh.horizon_ms:
        return fresh
    return state


__all__ = ["MAX_PENDING", "RollingOutcomes", "Tally", "outcomes_for", "restore"]
