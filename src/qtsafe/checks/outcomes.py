"""Outcomes: what the price did after each vote, and each model's hit rate and Brier score.

The realised direction of an event at time t for symbol s over horizon H is the sign of the move from
its start price (the event's own ``entry_price``, or with market data the last price at or before t)
to the first price of s at or after t + H (the stream's own later ``entry_price`` by default, or the
market-data series). An event whose horizon has not passed is PENDING and one whose horizon passed
with no later price yet is AWAITING: neither is ever guessed. Canary against baseline on the same
events is in :mod:`qtsafe.checks.paired`. Formulas and reasons: docs/verdicts.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from qtsafe.checks.dependence import critical_z, effective_sample_size, wilson_bounds
from qtsafe.votes import BUY, SELL

# Per-event status of the realised direction (int8 codes).
PENDING, AWAITING, NO_PRICE, STALE, FLAT, UP, DOWN = range(7)
STATUS_NAMES = ("pending", "awaiting", "no_price", "stale", "flat", "up", "down")
NOT_SCORED = -1


@dataclasses.dataclass(frozen=True)
class PriceSeries:
    """Market data: a price per (symbol code, time). Symbol codes must match the events' codes."""

    symbols: np.ndarray  # int codes
    ms: np.ndarray  # int64 epoch milliseconds
    price: np.ndarray  # float64


@dataclasses.dataclass(frozen=True)
class Realised:
    """Per event: a status code (STATUS_NAMES) and the log move from start to end price (NaN if none)."""

    status: np.ndarray  # int8
    move: np.ndarray  # float64
    horizon_ms: int

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.status, minlength=len(STATUS_NAMES))
        return {name: int(found[i]) for i, name in enumerate(STATUS_NAMES)}


def symbol_codes(*columns: Sequence[str]) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Map symbol strings of several columns (e.g. the events' and the market data's) to one shared set of
    int codes, as :func:`realised_direction` needs. Returns the code arrays and the names by code."""
    names = tuple(sorted(set().union(*(set(column) for column in columns))))
    index = {name: code for code, name in enumerate(names)}
    return [np.fromiter(map(index.__getitem__, column), dtype=np.int64, count=len(column))
            for column in columns], names


def _sorted_keys(symbols: np.ndarray, ms: np.ndarray, origin: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Order of (symbol, time) and the combined int64 key symbol * span + (time - origin), sorted.
    ``span`` exceeds every time offset, so key order is symbol order, then time order."""
    keys = symbols * span + (ms - origin)
    if keys.shape[0] and symbols.max() < 65_536 and bool(np.all(ms[1:] >= ms[:-1])):
        # The stream is chronological: a stable sort by symbol alone (a radix sort on 16 bits) suffices.
        order = np.argsort(symbols.astype(np.uint16), kind="stable")
    else:
        order = np.argsort(keys, kind="stable")
    return order, keys[order]


def _search(keys: np.ndarray, ordered_keys: np.ndarray, event_order: np.ndarray, offset: int,
            side: Literal["left", "right"]) -> np.ndarray:
    """Positions of every event's key + ``offset`` in the sorted ``keys``, queried in sorted order (searchsorted
    is ~3x faster on sorted needles) and scattered back to event order."""
    out = np.empty(event_order.shape[0], dtype=np.int64)
    out[event_order] = np.searchsorted(keys, ordered_keys + offset, side=side)
    return out


def realised_direction(
    event_ms: np.ndarray,
    symbols: np.ndarray,
    entry_price: np.ndarray,
    horizon_ms: int,
    *,
    now_ms: int | None = None,
    prices: PriceSeries | None = None,
    max_delay_ms: int | None = None,
    min_move: float = 0.0,
) -> Realised:
    """Realised direction of every event over ``horizon_ms`` (vectorised: two sorts and two searches).

    ``symbols`` are non-negative int codes. ``now_ms`` (default: the newest time in the data) decides
    what is PENDING. ``max_delay_ms`` (default none) marks an end price more than that after t + H as
    STALE; ``min_move`` (absolute log return, default 0) marks smaller moves FLAT. An invalid price
    (NaN, Inf, <= 0) neither starts nor ends a move.
    """
    if horizon_ms < 1:
        raise ValueError("the horizon must be at least 1 ms")
    t = np.asarray(event_ms, dtype=np.int64)
    sym = np.asarray(symbols, dtype=np.int64)
    price = np.asarray(entry_price, dtype=np.float64)
    n = t.shape[0]
    if sym.shape[0] != n or price.shape[0] != n:
        raise ValueError("event_ms, symbols and entry_price must have the same length")
    if n and sym.min() < 0:
        raise ValueError("symbol codes must be non-negative")
    status = np.full(n, PENDING, dtype=np.int8)
    move = np.full(n, np.nan)
    if n == 0:
        return Realised(status, move, horizon_ms)
    if prices is None:
        ref_sym, ref_ms, ref_price = sym, t, price
    else:
        ref_sym = np.asarray(prices.symbols, dtype=np.int64)
        ref_ms = np.asarray(prices.ms, dtype=np.int64)
        ref_price = np.asarray(prices.price, dtype=np.float64)
    good = np.isfinite(ref_price) & (ref_price > 0)
    if not good.all():  # copies only when some price is unusable (a million events: 24 MB saved otherwise)
        ref_sym, ref_ms, ref_price = ref_sym[good], ref_ms[good], ref_price[good]
    del good
    latest = int(max(t.max(), ref_ms.max())) if ref_ms.size else int(t.max())
    now = latest if now_ms is None else int(now_ms)
    origin = int(min(t.min(), ref_ms.min())) if ref_ms.size else int(t.min())
    span = latest - origin + horizon_ms + 2
    if int(max(sym.max(), ref_sym.max() if ref_sym.size else 0)) + 1 > (2**62) // span:
        raise ValueError("symbol codes times the time span do not fit the search key")
    due = t + horizon_ms
    passed = due <= now
    if ref_ms.size == 0:  # no usable price at all: nothing can resolve
        status[passed] = AWAITING
        return Realised(status, move, horizon_ms)
    order, keys = _sorted_keys(ref_sym, ref_ms, origin, span)
    sorted_sym, sorted_ms, sorted_price = ref_sym[order], ref_ms[order], ref_price[order]
    m = keys.shape[0]
    # Queries go in sorted order (searchsorted is ~3x faster on sorted needles) and are scattered back.
    if prices is None and m == n:
        event_order, ordered_keys = order, keys  # every event is its own reference point
    else:
        event_order, ordered_keys = _sorted_keys(sym, t, origin, span)

    if prices is None:
        start = price
    else:
        at = _search(keys, ordered_keys, event_order, 0, "right") - 1
        ok = (at >= 0) & (sorted_sym[np.maximum(at, 0)] == sym)
        start = np.where(ok, sorted_price[np.maximum(at, 0)], np.nan)
    has_start = np.isfinite(start) & (start > 0)

    pos = _search(keys, ordered_keys, event_order, horizon_ms, "left")
    del keys, ordered_keys, event_order, order  # the searches are done: free them before the last arrays
    inside = np.minimum(pos, m - 1)
    # An end price after "now" (data newer than the caller's clock) is not used: the vote stays pending.
    found = (pos < m) & (sorted_sym[inside] == sym) & (sorted_ms[inside] <= now)
    del pos
    status[passed & ~found] = AWAITING
    resolved = passed & found
    if max_delay_ms is not None:
        stale = resolved & (sorted_ms[inside] - due > max_delay_ms)
        status[stale] = STALE
        resolved &= ~stale
    status[resolved & ~has_start] = NO_PRICE
    resolved &= has_start
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.log(sorted_price[inside] / start)
    move[resolved] = moved[resolved]
    status[resolved] = np.where(np.abs(moved[resolved]) <= min_move, FLAT,
                                np.where(moved[resolved] > 0, UP, DOWN)).astype(np.int8)
    return Realised(status, move, horizon_ms)


def hits(actions: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Per element: 1 a BUY before an UP or a SELL before a DOWN, 0 the opposite, NOT_SCORED otherwise
    (HOLD, no vote, or a direction that is pending, awaiting, stale, flat or without a price)."""
    a = np.asarray(actions)
    s = np.asarray(status)
    out = np.full(a.shape[0], NOT_SCORED, dtype=np.int8)
    scored = ((a == BUY) | (a == SELL)) & ((s == UP) | (s == DOWN))
    out[scored] = ((a[scored] == BUY) == (s[scored] == UP)).astype(np.int8)
    return out


@dataclasses.dataclass(frozen=True)
class ModelOutcome:
    """One model's directional record. The Brier probability is its confidence (capped at 1) read as
    P(the direction of this BUY/SELL vote is right); the outcome is 1 for a hit, 0 for a miss."""

    name: str
    votes: int
    sided_votes: int  # BUY or SELL
    scored: int  # sided votes with a realised UP/DOWN
    pending: int  # sided votes whose horizon has not passed or that await a later price
    unscorable: int  # sided votes with no start price, a stale end price or a flat move
    hits: int
    hit_rate: float
    hit_low: float
    hit_high: float
    brier: float
    brier_low: float
    brier_high: float
    n_eff: float
    capped: int  # confidences above 1 read as 1
    confidence_level: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def score_model(
    name: str,
    event_idx: np.ndarray,
    action: np.ndarray,
    conf: np.ndarray,
    realised: Realised,
    *,
    confidence_level: float = 0.95,
) -> ModelOutcome:
    """Hit rate with a Wilson interval and Brier score with a normal interval, both two-sided at
    ``confidence_level`` and both with the effective size of the model's own series (event order)."""
    status = realised.status[np.asarray(event_idx, dtype=np.int64)]
    a = np.asarray(action)
    sided = (a == BUY) | (a == SELL)
    hit = hits(a, status)
    scored = hit >= 0
    waiting = sided & ((status == PENDING) | (status == AWAITING))
    y = hit[scored].astype(np.float64)
    n = int(y.shape[0])
    c = np.minimum(np.asarray(conf, dtype=np.float64)[scored], 1.0)
    errors = np.square(c - y)
    return model_outcome(
        name, votes=int(a.shape[0]), sided_votes=int(np.count_nonzero(sided)),
        pending=int(np.count_nonzero(waiting)), unscorable=int(np.count_nonzero(sided & ~scored & ~waiting)),
        scored=n, hits=int(y.sum()) if n else 0, brier_sum=float(errors.sum()),
        brier_sq_sum=float(np.square(errors).sum()),
        n_eff=effective_sample_size(y) if n else 0.0, n_eff_errors=effective_sample_size(errors) if n else 0.0,
        capped=int(np.count_nonzero(np.asarray(conf, dtype=np.float64)[scored] > 1.0)),
        confidence_level=confidence_level,
    )


def model_outcome(
    name: str,
    *,
    votes: int,
    sided_votes: int,
    pending: int,
    unscorable: int,
    scored: int,
    hits: int,
    brier_sum: float,
    brier_sq_sum: float,
    n_eff: float,
    n_eff_errors: float,
    capped: int,
    confidence_level: float = 0.95,
) -> ModelOutcome:
    """A :class:`ModelOutcome` from counts and sums: ``scored`` hit/miss outcomes with ``hits`` hits, the sum of
    the squared errors (confidence capped at 1 minus the 0/1 outcome) and of their squares, and the effective
    sizes of the hit series and of the error series. :func:`score_model` (arrays) and the monitor's rolling
    outcomes (counters) both end here, so the intervals are computed one way."""
    z = critical_z((1.0 - confidence_level) / 2.0)
    nan = float("nan")
    n = scored
    if n == 0:
        hit_rate = brier = n_eff = nan
        hit_low, hit_high, brier_low, brier_high = 0.0, 1.0, 0.0, 1.0
    else:
        hit_rate = hits / n
        hit_low, hit_high = wilson_bounds(hit_rate * n_eff, n_eff, z)
        brier = brier_sum / n
        sd = math.sqrt(max(brier_sq_sum / n - brier * brier, 0.0))
        half = z * sd / math.sqrt(n_eff_errors) if n > 1 else math.inf
        brier_low, brier_high = max(brier - half, 0.0), min(brier + half, 1.0)
    return ModelOutcome(
        name=name, votes=votes, sided_votes=sided_votes, scored=n, pending=pending, unscorable=unscorable,
        hits=hits, hit_rate=hit_rate, hit_low=hit_low, hit_high=hit_high, brier=brier, brier_low=brier_low,
        brier_high=brier_high, n_eff=n_eff, capped=capped, confidence_level=confidence_level,
    )


__all__ = [
    "STATUS_NAMES",
    "ModelOutcome",
    "PriceSeries",
    "Realised",
    "hits",
    "model_outcome",
    "realised_direction",
    "score_model",
    "symbol_codes",
]
