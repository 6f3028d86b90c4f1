"""Rolling per-model state for the monitor: a recent window and cumulative figures, from new events only.

Updated from the new events alone, so a tick's cost does not grow with the length of the stream.

Cumulative percentiles come from a fixed histogram (bins of 0.001 over [0, 1], one bin above 1):
P10/P90 to within 0.001, which is far finer than the 0.12 spread rule. The recent window keeps the
last N votes exactly (ring arrays), judged with the same code as the gate.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any

import numpy as np

from qtsafe.checks.consensus import (
    ABSENT,
    AGREE_SIDE,
    HARD,
    NO_VOTE,
    OUTCOME_NAMES,
    ConsensusFigures,
    ConsensusSeries,
    leave_one_out,
    vote_matrix,
)
from qtsafe.checks.ensemble import EnsembleFigures
from qtsafe.checks.quality import ACTIONS, ModelStats, VoteDefects, model_stats
from qtsafe.config import Thresholds
from qtsafe.telemetry.columns import ModelColumns
from qtsafe.votes import BAD_VOTE_KINDS, INVALID_KINDS

BINS = 1001  # [0, 0.001), ..., [0.999, 1.0], and one bin for values above 1
_EDGES = np.linspace(0.0, 1.0, 1001)


def pack(values: np.ndarray) -> str:
    """An array as ``"<dtype>:<base64 of its bytes>"``: exact (float64 bit for bit), and a few kilobytes where a
    JSON list of 1,000 confidences is twenty and, pretty-printed a number a line, much slower to write."""
    array = np.ascontiguousarray(values)
    return f"{array.dtype.str}:{base64.b64encode(array.tobytes()).decode('ascii')}"


def unpack(value: Any, dtype: Any) -> np.ndarray:
    """An array saved by :func:`pack`, or as a JSON list by a version before it."""
    if isinstance(value, str):
        kind, _, data = value.partition(":")
        if np.dtype(kind) != np.dtype(dtype).newbyteorder("<") and np.dtype(kind) != np.dtype(dtype):
            raise ValueError(f"saved array of {kind}, expected {np.dtype(dtype).str}")
        return np.frombuffer(base64.b64decode(data, validate=True), dtype=np.dtype(kind)).astype(dtype)
    return np.array(value, dtype)


@dataclasses.dataclass
class RollingModel:
    """One model since activation: the last ``history`` valid votes (the judged window is the newest
    ``window`` of them; the longer history measures dependence) and cumulative counters."""

    name: str
    window: int
    history: int = 0  # votes kept (at least ``window``); 0 means just the window
    actions: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int8))
    conf: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.float64))
    stamps: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))
    n: int = 0
    action_counts: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0])
    total: float = 0.0
    total_sq: float = 0.0
    histogram: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(BINS, np.int64))
    present: int = 0
    inactive: int = 0
    above_one: int = 0
    invalid: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(INVALID_KINDS, 0))
    bad: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(BAD_VOTE_KINDS, 0))
    last_seen_event: int = -1  # global evaluated-event index of the model's newest breakdown entry

    def update(self, columns: ModelColumns, event_ms: np.ndarray, event_offset: int, events_in_batch: int) -> None:
        """Fold one batch of new votes in (columns are that batch's, event indices local to it)."""
        d = columns.defects
        self.present += d.present
        self.inactive += d.inactive
        self.above_one += d.above_one
        for kind, value in d.invalid_confidence.items():
            self.invalid[kind] = self.invalid.get(kind, 0) + value
        for kind, value in d.bad_votes.items():
            self.bad[kind] = self.bad.get(kind, 0) + value
        if d.present:
            # Seen in this batch: precise enough for the "canary missing" rule, which looks at whole windows.
            self.last_seen_event = event_offset + events_in_batch - 1
        if not columns.n_valid:
            return
        action, conf = columns.action, columns.conf
        stamps = event_ms[columns.event_idx]
        self.n += int(action.shape[0])
        counts = np.bincount(action.astype(np.int64), minlength=3)
        self.action_counts = [self.action_counts[i] + int(counts[i]) for i in range(3)]
        self.total += float(conf.sum())
        self.total_sq += float(np.square(conf).sum())
        bins = np.minimum(np.searchsorted(_EDGES, conf, side="right") - 1, BINS - 1)
        bins[conf > 1.0] = BINS - 1
        self.histogram += np.bincount(bins, minlength=BINS)
        keep = max(self.window, self.history)
        self.actions = np.concatenate([self.actions, action])[-keep:]
        self.conf = np.concatenate([self.conf, conf])[-keep:]
        self.stamps = np.concatenate([self.stamps, stamps])[-self.window:]  # only the window's are read

    def recent(self, thresholds: Thresholds, newer_than_ms: int | None = None) -> ModelStats:
        actions, conf, stamps = (x[-self.window:] for x in (self.actions, self.conf, self.stamps))
        keep = slice(None) if newer_than_ms is None else stamps >= newer_than_ms
        return model_stats(actions[keep], conf[keep], thresholds)

    def cumulative(self) -> ModelStats:
        """Whole-since-activation figures from the counters (percentiles from the histogram)."""
        n = self.n
        counts = {a: self.action_counts[i] for i, a in enumerate(ACTIONS)}
        if n == 0:
            nan = float("nan")
            return ModelStats(0, counts, {a: nan for a in ACTIONS}, nan, nan, nan, nan, nan, nan)
        mean = self.total / n
        std = math.sqrt(max(self.total_sq / n - mean * mean, 0.0))
        cum = np.cumsum(self.histogram)

        def pct(q: float) -> float:
            index = int(np.searchsorted(cum, q * n, side="left"))
            return 1.0 if index >= BINS - 1 else (index + 0.5) / 1000.0

        return ModelStats(n, counts, {a: counts[a] / n for a in ACTIONS}, mean, std, pct(0.10), pct(0.50),
                          pct(0.90), float("nan"))

    def defects(self) -> VoteDefects:
        return VoteDefects(self.present, self.inactive, dict(self.invalid), self.above_one, dict(self.bad))

    def to_state(self) -> dict[str, Any]:
        nonzero = np.flatnonzero(self.histogram)
        return {
            "name": self.name, "window": self.window, "history": self.history, "actions": pack(self.actions),
            "conf": pack(self.conf),
            "stamps": pack(self.stamps), "n": self.n, "action_counts": self.action_counts, "total": self.total,
            "total_sq": self.total_sq, "histogram": {str(int(i)): int(self.histogram[i]) for i in nonzero},
            "present": self.present, "inactive": self.inactive, "above_one": self.above_one,
            "invalid": self.invalid, "bad": self.bad, "last_seen_event": self.last_seen_event,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> RollingModel:
        histogram = np.zeros(BINS, np.int64)
        for key, value in data["histogram"].items():
            histogram[int(key)] = int(value)
        return cls(
            name=data["name"], window=int(data["window"]), history=int(data.get("history", 0)),
            actions=unpack(data["actions"], np.int8),
            conf=unpack(data["conf"], np.float64), stamps=unpack(data["stamps"], np.int64), n=int(data["n"]),
            action_counts=[int(x) for x in data["action_counts"]], total=float(data["total"]),
            total_sq=float(data["total_sq"]), histogram=histogram, present=int(data["present"]),
            inactive=int(data["inactive"]), above_one=int(data["above_one"]), invalid=dict(data["invalid"]),
            bad=dict(data["bad"]), last_seen_event=int(data["last_seen_event"]),
        )


MAX_BATCHES = 96  # the whole-watch agreement rule keeps the newest 96 batches (24 h of 15-minute batches)


@dataclasses.dataclass
class RollingEnsemble:
    """Per-event plurality share and hard disagreement over the last ``window`` judged events (the last
    ``history`` are kept, to measure dependence over longer than the window), the window's vote counts (for
    the chance-corrected agreement) and, for the whole-watch agreement rule, the sum and count of the shares
    in batches of ``batch_ms`` of stream time since the first judged event."""

    window: int
    history: int = 0
    shares: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.float64))
    hard: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, bool))
    votes: np.ndarray = dataclasses.field(default_factory=lambda: np.empty((0, 3), np.int16))
    batch_ms: int = 900_000
    origin_ms: int | None = None
    first_batch: int = 0  # the batch number of batch_sums[0] (older batches beyond MAX_BATCHES are dropped)
    batch_sums: list[float] = dataclasses.field(default_factory=list)
    batch_counts: list[int] = dataclasses.field(default_factory=list)

    def update(self, votes: np.ndarray, event_ms: np.ndarray | None = None) -> None:
        if votes.size == 0:
            return
        counts = votes.astype(np.int64)
        voters = counts.sum(axis=1)
        judged = voters >= 2
        if not judged.any():
            return
        share = counts[judged].max(axis=1) / voters[judged]
        hard = (counts[judged, 0] > 0) & (counts[judged, 1] > 0)
        keep = max(self.window, self.history)
        self.shares = np.concatenate([self.shares, share])[-keep:]
        self.hard = np.concatenate([self.hard, hard])[-keep:]
        self.votes = np.concatenate([self.votes, counts[judged, :3].astype(np.int16)])[-self.window:]
        if event_ms is not None:
            self._add_batches(share, np.asarray(event_ms, dtype=np.int64)[judged])

    def _add_batches(self, share: np.ndarray, ms: np.ndarray) -> None:
        if self.origin_ms is None:
            self.origin_ms = int(ms[0])
        number = np.maximum((ms - self.origin_ms) // self.batch_ms, 0) - self.first_batch
        number = np.maximum(number, 0)  # an event older than the kept batches joins the oldest one
        size = int(number.max()) + 1
        if size > len(self.batch_sums):
            grow = size - len(self.batch_sums)
            self.batch_sums += [0.0] * grow
            self.batch_counts += [0] * grow
        sums = np.bincount(number, weights=share, minlength=size)
        counts = np.bincount(number, minlength=size)
        for i in np.flatnonzero(counts):
            self.batch_sums[i] += float(sums[i])
            self.batch_counts[i] += int(counts[i])
        drop = len(self.batch_sums) - MAX_BATCHES
        if drop > 0:
            del self.batch_sums[:drop], self.batch_counts[:drop]
            self.first_batch += drop

    def batch_means(self, *, min_events: int = 30) -> np.ndarray:
        """Mean share of each completed batch (the newest, still filling, is left out) with at least
        ``min_events`` judged events: a quiet batch carries too little to count as one observation."""
        sums, counts = np.array(self.batch_sums[:-1]), np.array(self.batch_counts[:-1])
        full = counts >= min_events
        return sums[full] / counts[full] if full.any() else np.empty(0)

    def figures(self) -> EnsembleFigures:
        shares, hard = self.shares[-self.window:], self.hard[-self.window:]
        n = int(shares.shape[0])
        if n == 0:
            return EnsembleFigures(0, float("nan"), float("nan"))
        return EnsembleFigures(n, float(shares.mean()), float(np.count_nonzero(hard) / n))

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window, "history": self.history, "shares": pack(self.shares),
                "hard": pack(self.hard), "votes": pack(self.votes.reshape(-1)), "batch_ms": self.batch_ms,
                "origin_ms": self.origin_ms, "first_batch": self.first_batch, "batch_sums": self.batch_sums,
                "batch_counts": self.batch_counts}

    @classmethod
    def from_state(cls, data: dict[str, Any], batch_ms: int = 900_000) -> RollingEnsemble:
        """A saved ensemble; one saved before the votes and batches were kept resumes without them (the
        chance-corrected agreement fills within a window, the batches start at the next event)."""
        votes = unpack(data.get("votes", []), np.int16).reshape(-1, 3)
        return cls(int(data["window"]), int(data.get("history", 0)), unpack(data["shares"], np.float64),
                   unpack(data["hard"], bool), votes, int(data.get("batch_ms", batch_ms)),
                   data.get("origin_ms"), int(data.get("first_batch", 0)),
                   [float(x) for x in data.get("batch_sums", [])], [int(x) for x in data.get("batch_counts", [])])


@dataclasses.dataclass
class RollingConsensus:
    """Each model's vote against the others' consensus (leave-one-out outcome codes) over the last ``window`` events.

    Codes are computed per batch of new events (a consensus is per event, so batches need no overlap)
    and kept per model, aligned by event: a model absent from an event has the ABSENT code there. The
    others' plurality action in each of a model's events is kept too (``market``), with whole-watch
    counts (``market_totals``): what the market made the others do while the model voted.
    """

    window: int
    codes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    events: int = 0  # events in the buffer (at most ``window``)
    market: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    market_totals: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def update(self, evaluated: int, columns: dict[str, ModelColumns]) -> None:
        if evaluated == 0:
            return
        series = leave_one_out(vote_matrix(evaluated, columns))
        batch = {name: j for j, name in enumerate(series.names)}
        for name in set(self.codes) | set(batch):
            j = batch.get(name)
            codes = series.codes[j] if j is not None else np.full(evaluated, ABSENT, np.int8)
            agreed = series.consensus[j] if j is not None else np.full(evaluated, NO_VOTE, np.int8)
            agreed = np.where(codes == ABSENT, np.int8(NO_VOTE), agreed).astype(np.int8)
            old = self.codes.get(name, np.full(self.events, ABSENT, np.int8))
            self.codes[name] = np.concatenate([old, codes])[-self.window:]
            old = self.market.get(name, np.full(self.events, NO_VOTE, np.int8))
            self.market[name] = np.concatenate([old, agreed])[-self.window:]
            counts = np.bincount(agreed[agreed >= 0].astype(np.int64), minlength=3)
            totals = self.market_totals.get(name, [0, 0, 0])
            self.market_totals[name] = [totals[k] + int(counts[k]) for k in range(3)]
        self.events = min(self.events + evaluated, self.window)

    def market_shares(self, name: str, votes: int | None = None) -> np.ndarray | None:
        """Shares of BUY/SELL/HOLD in the others' consensus over the model's last ``votes`` events with one
        (all since the watch began when None); None when there is no such event."""
        if votes is None:
            totals = np.array(self.market_totals.get(name, [0, 0, 0]), np.float64)
        else:
            agreed = self.market.get(name, np.empty(0, np.int8))
            agreed = agreed[agreed >= 0][-votes:]
            totals = np.bincount(agreed.astype(np.int64), minlength=3).astype(np.float64)
        total = float(totals.sum())
        return totals / total if total else None

    def hard_rates(self) -> dict[str, float]:
        """Each model's hard rate (hard / sided) in the buffer, without effective sizes: a cheap first look."""
        out = {}
        for name, codes in self.codes.items():
            counts = np.bincount(codes.astype(np.int64), minlength=len(OUTCOME_NAMES))
            sided = int(counts[AGREE_SIDE] + counts[HARD])
            out[name] = counts[HARD] / sided if sided else float("nan")
        return out

    def figures(self) -> dict[str, ConsensusFigures]:
        if not self.codes:
            return {}
        names = tuple(sorted(self.codes))
        codes = np.stack([self.codes[name] for name in names])
        series = ConsensusSeries(names, codes, np.empty((0, 0), np.int8))
        return {name: series.figures(name) for name in names}

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window, "events": self.events,
                "codes": {name: pack(codes) for name, codes in self.codes.items()},
                "market": {name: pack(agreed) for name, agreed in self.market.items()},
                "market_totals": self.market_totals}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> RollingConsensus:
        return cls(int(data["window"]), {name: unpack(codes, np.int8) for name, codes in data["codes"].items()},
                   int(data["events"]),
                   {name: unpack(agreed, np.int8) for name, agreed in data.get("market", {}).items()},
                   {name: [int(x) for x in totals] for name, totals in data.get("market_totals", {}).items()})
