"""Outcomes: what the price did after each vote, hit rates and Brier scores, canary against baseline.

The realised direction of an event at time t for symbol s over horizon H is the sign of the move from
its start price (the event's own ``entry_price``, or with market data the last price at or before t)
to the first price of s at or after t + H (the stream's own later ``entry_price`` by default, or the
market-data series). An event whose horizon has not passed is PENDING and one whose horizon passed
with no later price yet is AWAITING: neither is ever guessed. Formulas and reasons: docs/verdicts.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np

from qtsafe.checks.dependence import critical_z, effective_sample_size, wilson_bounds
from qtsafe.status import Status

# Per-event status of the realised direction (int8 codes).
PENDING, AWAITING, NO_PRICE, STALE, FLAT, UP, DOWN = range(7)
STATUS_NAMES = ("pending", "awaiting", "no_price", "stale", "flat", "up", "down")
BUY, SELL, HOLD = 0, 1, 2
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
    ref_sym, ref_ms, ref_price = ref_sym[good], ref_ms[good], ref_price[good]
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

    def search(offset: int, side: Literal["left", "right"]) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        out[event_order] = np.searchsorted(keys, ordered_keys + offset, side=side)
        return out

    if prices is None:
        start = price
    else:
        at = search(0, "right") - 1
        ok = (at >= 0) & (sorted_sym[np.maximum(at, 0)] == sym)
        start = np.where(ok, sorted_price[np.maximum(at, 0)], np.nan)
    has_start = np.isfinite(start) & (start > 0)

    pos = search(horizon_ms, "left")
    inside = np.minimum(pos, m - 1)
    # An end price after "now" (data newer than the caller's clock) is not used: the vote stays pending.
    found = (pos < m) & (sorted_sym[inside] == sym) & (sorted_ms[inside] <= now)
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
    c = np.asarray(conf, dtype=np.float64)[scored]
    z = critical_z((1.0 - confidence_level) / 2.0)
    nan = float("nan")
    if n == 0:
        hit_rate = brier = n_eff = nan
        hit_low, hit_high, brier_low, brier_high = 0.0, 1.0, 0.0, 1.0
    else:
        n_eff = effective_sample_size(y)
        hit_rate = float(y.mean())
        hit_low, hit_high = wilson_bounds(hit_rate * n_eff, n_eff, z)
        errors = np.square(np.minimum(c, 1.0) - y)
        brier = float(errors.mean())
        half = z * float(errors.std()) / math.sqrt(effective_sample_size(errors)) if n > 1 else math.inf
        brier_low, brier_high = max(brier - half, 0.0), min(brier + half, 1.0)
    return ModelOutcome(
        name=name, votes=int(a.shape[0]), sided_votes=int(np.count_nonzero(sided)), scored=n,
        pending=int(np.count_nonzero(waiting)), unscorable=int(np.count_nonzero(sided & ~scored & ~waiting)),
        hits=int(y.sum()) if n else 0, hit_rate=hit_rate, hit_low=hit_low, hit_high=hit_high, brier=brier,
        brier_low=brier_low, brier_high=brier_high, n_eff=n_eff, capped=int(np.count_nonzero(c > 1.0)),
        confidence_level=confidence_level,
    )


def mcnemar_exact(canary_only: int, baseline_only: int) -> tuple[float, float]:
    """Exact McNemar test on the discordant pairs: (two-sided p, one-sided p that the canary is worse).

    Under "equally good" each discordant pair is the canary's hit with probability 1/2, so canary_only ~
    Binomial(canary_only + baseline_only, 1/2). Two-sided p = min(1, 2 * the smaller tail).
    """
    from scipy.stats import binom  # lazy: the gates start fast

    discordant = canary_only + baseline_only
    if discordant == 0:
        return 1.0, 1.0
    lower = float(binom.cdf(canary_only, discordant, 0.5))
    upper = float(binom.sf(canary_only - 1, discordant, 0.5))
    return min(1.0, 2.0 * min(lower, upper)), lower


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """Canary against baseline on the same events, both with a scored direction.

    ``both`` hit, ``canary_only`` hit, ``baseline_only`` hit, ``neither`` hit; the difference is
    canary hit rate minus baseline hit rate. ``n_eff`` is the effective size of the per-pair difference
    series (event order), used to widen the interval; the exact McNemar p-values treat pairs as independent.
    """

    pairs: int
    both: int
    canary_only: int
    baseline_only: int
    neither: int
    n_eff: float
    p_two_sided: float
    p_canary_worse: float

    @property
    def canary_rate(self) -> float:
        return (self.both + self.canary_only) / self.pairs if self.pairs else float("nan")

    @property
    def baseline_rate(self) -> float:
        return (self.both + self.baseline_only) / self.pairs if self.pairs else float("nan")

    @property
    def difference(self) -> float:
        return (self.canary_only - self.baseline_only) / self.pairs if self.pairs else float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("canary_rate", "baseline_rate", "difference"):
            value = getattr(self, key)
            data[key] = value if math.isfinite(value) else None
        return data


def paired_comparison(canary_hits: np.ndarray, baseline_hits: np.ndarray) -> PairedComparison:
    """Pair per-event hit codes (from :func:`hits`) of the canary and the baseline; only events both scored."""
    c = np.asarray(canary_hits)
    b = np.asarray(baseline_hits)
    if c.shape != b.shape:
        raise ValueError("canary and baseline hits must be aligned on the same events")
    keep = (c >= 0) & (b >= 0)
    c, b = c[keep].astype(bool), b[keep].astype(bool)
    both = int(np.count_nonzero(c & b))
    canary_only = int(np.count_nonzero(c & ~b))
    baseline_only = int(np.count_nonzero(~c & b))
    pairs = int(c.shape[0])
    n_eff = effective_sample_size(c.astype(np.int8) - b.astype(np.int8)) if pairs else 0.0
    p_two, p_worse = mcnemar_exact(canary_only, baseline_only)
    return PairedComparison(pairs, both, canary_only, baseline_only, pairs - both - canary_only - baseline_only,
                            n_eff, p_two, p_worse)


def paired_difference_bounds(comparison: PairedComparison, z: float) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval (his method 10) for the paired difference canary - baseline,
    with every cell scaled by n_eff / pairs (a design effect for dependent events)."""
    cmp = comparison
    if cmp.pairs == 0 or math.isinf(z):
        return -1.0, 1.0
    k = cmp.n_eff / cmp.pairs
    a, b, c, d = cmp.both * k, cmp.canary_only * k, cmp.baseline_only * k, cmp.neither * k
    n = cmp.n_eff
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_bounds(a + b, n, z)
    l2, u2 = wilson_bounds(a + c, n, z)
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    # Newcombe's correlation estimate with his continuity correction: ad - bc is reduced by n/2 when
    # positive (and taken as 0 in between), as in his method 10 and Fagerland et al. (2017), ch. 8.
    cross = a * d - b * c
    cross = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = cross / math.sqrt(denominator) if denominator > 0 else 0.0
    delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    epsilon = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    theta = p1 - p2
    return max(theta - delta, -1.0), min(theta + epsilon, 1.0)


@dataclasses.dataclass(frozen=True)
class NonInferiority:
    """"The canary is not worse than the baseline by more than ``margin`` at ``confidence``": the verdict."""

    status: Status  # PASS, FAIL or WAIT
    difference: float
    low: float
    high: float
    margin: float
    confidence: float
    pairs: int
    needed_more: int | None  # paired outcomes still needed (WAIT); None when no count would settle it
    message: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        for key in ("difference", "low", "high"):
            data[key] = data[key] if math.isfinite(data[key]) else None
        return data


def non_inferiority(
    comparison: PairedComparison,
    *,
    margin: float = 0.02,
    confidence: float = 0.95,
    min_pairs: int = 30,
    planning_discordance: float = 0.3,
    max_needed: int = 10_000_000,
) -> NonInferiority:
    """PASS when the lower one-sided bound of canary - baseline is above -margin; FAIL when the upper one
    is below -margin (worse by more than the margin, established); otherwise WAIT with an estimate of
    how many more paired outcomes would settle it. Fewer than ``min_pairs`` pairs is always WAIT.

    Needed pairs: the bound's distance from the estimate shrinks as 1/sqrt(n), so the bound reaches
    -margin at n* = pairs * (h / g)^2, h the current distance from the estimate to the bound that
    must cross and g the estimate's distance from -margin. With no pairs yet, n* = z^2 psi / margin^2
    (psi = ``planning_discordance``, the expected share of discordant pairs, difference 0).
    """
    if not 0.0 < margin < 1.0 or not 0.5 < confidence < 1.0:
        raise ValueError("need 0 < margin < 1 and 0.5 < confidence < 1")
    z = critical_z(1.0 - confidence)
    cmp = comparison
    low, high = paired_difference_bounds(cmp, z)
    d = cmp.difference
    pct = f"{confidence * 100:g} %"
    words = (f"canary {_pct(cmp.canary_rate)} vs baseline {_pct(cmp.baseline_rate)} right on {cmp.pairs} "
             f"paired outcomes (difference {_signed(d)}, {pct} bounds {_signed(low)} to {_signed(high)}, "
             f"margin {_pct(margin)})") if cmp.pairs else "no paired outcomes yet"
    if cmp.pairs >= min_pairs and low > -margin:
        return NonInferiority(Status.PASS, d, low, high, margin, confidence, cmp.pairs, 0,
                              f"not worse than the baseline by more than {_pct(margin)}: {words}")
    if cmp.pairs >= min_pairs and high < -margin:
        return NonInferiority(Status.FAIL, d, low, high, margin, confidence, cmp.pairs, 0,
                              f"worse than the baseline by more than {_pct(margin)}: {words}")
    if cmp.pairs == 0:
        target = math.ceil(z * z * planning_discordance / (margin * margin))
    else:
        h, gap = (d - low, d + margin) if d > -margin else (high - d, -margin - d)
        target = math.ceil(cmp.pairs * (h / gap) ** 2) if gap > 0 else None
    if target is None or target > max_needed:
        return NonInferiority(Status.WAIT, d, low, high, margin, confidence, cmp.pairs, None,
                              f"cannot tell yet: {words}; the estimate sits at the margin")
    more = max(target - cmp.pairs, min_pairs - cmp.pairs, 1)
    return NonInferiority(Status.WAIT, d, low, high, margin, confidence, cmp.pairs, more,
                          f"cannot tell yet: {words}; needs about {more} more resolved outcomes")


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %" if math.isfinite(value) else "n/a"


def _signed(value: float) -> str:
    return f"{value * 100:+.1f} pts" if math.isfinite(value) else "n/a"


__all__ = [
    "STATUS_NAMES",
    "ModelOutcome",
    "NonInferiority",
    "PairedComparison",
    "PriceSeries",
    "Realised",
    "hits",
    "mcnemar_exact",
    "non_inferiority",
    "paired_comparison",
    "paired_difference_bounds",
    "realised_direction",
    "score_model",
]
