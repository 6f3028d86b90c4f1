"""Producer-shape ``trade.intent`` telemetry for named scenarios: for the tests, the demo and the benchmark.

Each scenario is the healthy ensemble with one defect injected, so a verdict table can map every
scenario to the finding that must name it. Entries are exactly what the AI engine writes: string
fields, the intent as one JSON string in ``payload`` (bare ``NaN`` tokens included where a scenario
needs them, as Python's json module writes them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.errors import InputError, TelemetryError
from qtsafe.fsio import atomic_write_text
from qtsafe.scenarios import DEFAULT_TARGET, MARKETS, MODELS, SCENARIOS
from qtsafe.timeutil import UTC, utc_now

_MODEL_LABEL = {"xgb": "xgboost", "lgbm": "lgbm", "nhits": "nhits", "patchtst": "patchtst_shadow"}
_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "ADAUSDT", "XRPUSDT")
COLLAPSED_CONFIDENCE = 0.6150280237197876
CONSTANT_CONFIDENCE = 0.5239
ACTION_NAMES = np.array(["BUY", "SELL", "HOLD"])

# How healthy models read the market (tuned so that, over voting models xgb/lgbm/nhits, agreement is ~72 % and
# BUY-vs-SELL hard disagreement ~12 %: the noise a real ensemble shows, not a flattering one). Each model sees
# the symbol's latent signal plus its own noise, and acts beyond its own threshold: models differ in how readily
# they leave HOLD, as real ones do.
_PERCEPTION_NOISE = 1.05
_THRESHOLD = {"xgb": 0.4, "lgbm": 0.75, "nhits": 1.05, "patchtst": 0.8}
_VOTERS = ("xgb", "lgbm", "nhits")
_PUBLISH_MIN = 0.3  # the producer publishes a decision only when the voters' mean reading clears this (no HOLDs)
_SIGNAL_TAU_S = {"plain": 60.0, "regimes": 300.0}
_DIRECTION_TAU_S, _VOLATILITY_TAU_S = 900.0, 1200.0
_DIRECTION_LOADING, _VOLATILITY_SCALE = 0.4, 0.3
# Prices: the signal is the symbol's drift (log-price per second per unit, scaled so that a unit signal moves
# the price 0.11 % over the next 5 minutes in either market), plus noise per sqrt(second): a model that reads
# the signal calls the 5-minute direction right ~56-60 % of the time, a backwards one ~40-44 %.
_MOVE_5MIN, _PRICE_NOISE = 1.1e-3, 2e-4


@dataclasses.dataclass(frozen=True)
class Entry:
    """One stream entry: its ID and its string fields."""

    id: str
    fields: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "fields": self.fields}, ensure_ascii=False)


def ar1(rng: np.random.Generator, n: int, cols: int, phi: float) -> np.ndarray:
    """(n, cols) stationary AR(1) paths with unit variance: x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t.

    Vectorised in blocks (the closed form x_k = phi^k x_0 + sum_j phi^(k-j) e_j within a block), so a million
    events cost milliseconds, not a Python loop per event.
    """
    out = np.empty((n, cols))
    innovations = rng.normal(0.0, np.sqrt(1.0 - phi * phi), (n, cols))
    prev = rng.normal(0.0, 1.0, cols)
    block = max(1, min(256, int(30.0 / max(-np.log(max(phi, 1e-300)), 1e-12))))  # phi^-block stays ~exp(30) at most
    for start in range(0, n, block):
        e = innovations[start:start + block]
        k = np.arange(1, e.shape[0] + 1)[:, None]
        scale = phi ** k
        out[start:start + block] = scale * (prev + np.cumsum(e / scale, axis=0))
        prev = out[start + e.shape[0] - 1]
    return out


@dataclasses.dataclass(frozen=True)
class Market:
    """What every model sees: per event, its symbol, the symbol's latent signal and the market's volatility."""

    symbol: np.ndarray  # int index into _SYMBOLS, per event
    signal: np.ndarray  # the symbol's latent signal at the event (unit variance)
    volatility: np.ndarray  # market-wide scale on the signal (1 without regimes)
    log_price: np.ndarray  # (events, symbols): every symbol's log price at every event time


def market_path(rng: np.random.Generator, events: int, spacing_s: float, market: str) -> Market:
    symbols = len(_SYMBOLS)
    tau = _SIGNAL_TAU_S[market]
    own = ar1(rng, events, symbols, float(np.exp(-spacing_s / tau)))
    if market == "regimes":
        direction = ar1(rng, events, 1, float(np.exp(-spacing_s / _DIRECTION_TAU_S)))
        signal = _DIRECTION_LOADING * direction + np.sqrt(1 - _DIRECTION_LOADING ** 2) * own
        swing = ar1(rng, events, 1, float(np.exp(-spacing_s / _VOLATILITY_TAU_S)))[:, 0]
        volatility = np.exp(_VOLATILITY_SCALE * swing)
    else:
        signal, volatility = own, np.ones(events)
    drift = _MOVE_5MIN / (tau * (1.0 - np.exp(-300.0 / tau)))
    steps = drift * signal * spacing_s + _PRICE_NOISE * np.sqrt(spacing_s) * rng.normal(0, 1, (events, symbols))
    log_price = np.log(100.0) + np.cumsum(steps, axis=0)
    which = rng.integers(0, symbols, events)
    return Market(which, signal[np.arange(events), which], volatility, log_price)


def _readings(rng: np.random.Generator, m: Market) -> dict[str, np.ndarray]:
    """Each model's reading of the event; the producer's filter (no HOLD decisions) redraws the noise of events
    whose voters' mean reading would not clear the publishing bar, up to a few times, as a filtered sample."""
    n = m.signal.shape[0]
    base = m.volatility * m.signal
    draws = {name: base + _PERCEPTION_NOISE * rng.normal(0, 1, n) for name in MODELS}
    for _ in range(4):
        weak = np.abs(np.mean([draws[v] for v in _VOTERS], axis=0)) <= _PUBLISH_MIN
        if not weak.any():
            break
        for name in MODELS:
            draws[name][weak] = base[weak] + _PERCEPTION_NOISE * rng.normal(0, 1, int(weak.sum()))
    return draws


def _actions(reading: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(reading > threshold, 0, np.where(reading < -threshold, 1, 2)).astype(np.int8)


def _healthy_confidence(rng: np.random.Generator, actions: np.ndarray, reading: np.ndarray) -> np.ndarray:
    n = actions.shape[0]
    directional = np.clip(0.5 + 0.45 * np.tanh(np.abs(reading) / 2.0) + rng.normal(0, 0.04, n), 0.5, 0.99)
    return np.where(actions == 2, rng.uniform(0.40, 0.70, n), directional)


def generate(
    scenario: str,
    events: int,
    *,
    seed: int = 7,
    end: dt.datetime | None = None,
    spacing_ms: int = 1000,
    market: str = "plain",
    onset: float | None = None,
    target: str | None = None,
) -> Iterator[Entry]:
    """Yield ``events`` entries of ``scenario``, oldest first, the newest at ``end`` (default now).

    ``market`` is "plain" or "regimes" (see MARKETS); ``onset`` (0-1) is the share of events before the defect
    starts (0 = from the first event; late-collapse's default is 0.625); ``target`` is the model it hits.
    """
    if scenario not in SCENARIOS:
        raise InputError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    if market not in MARKETS:
        raise InputError(f"unknown market {market!r} (known: {', '.join(MARKETS)})")
    if events < 1:
        raise InputError("--events must be at least 1")
    if spacing_ms < 1:
        raise InputError("spacing must be at least 1 ms")
    if onset is not None and not 0.0 <= onset < 1.0:
        raise InputError("--onset must be in [0, 1)")
    if target is not None and target not in MODELS:
        raise InputError(f"unknown target model {target!r} (known: {', '.join(MODELS)})")
    rng = np.random.default_rng(seed)
    end = end or utc_now()
    if scenario == "stalled":
        end = end - dt.timedelta(minutes=30)
    end_ms = int(end.timestamp() * 1000)
    start_ms = end_ms - (events - 1) * spacing_ms
    if start_ms <= 0:
        raise InputError("too many events for that spacing: the first would fall before 1970")
    path = market_path(rng, events, spacing_ms / 1000.0, market)
    reading = _readings(rng, path)
    side = (np.mean([reading[v] for v in _VOTERS], axis=0) < 0).astype(np.int8)  # 0 BUY, 1 SELL
    actions = {m: _actions(reading[m], _THRESHOLD[m]) for m in MODELS}
    conf = {m: _healthy_confidence(rng, actions[m], reading[m]) for m in MODELS}
    inactive = {m: np.zeros(events, dtype=bool) for m in MODELS}
    cut = int(events * (onset if onset is not None else (0.625 if scenario == "late-collapse" else 0.0)))
    hit = np.arange(events) >= cut
    who = target or DEFAULT_TARGET.get(scenario, "patchtst")
    if scenario in ("collapsed", "late-collapse"):
        actions[who] = np.where(hit, side, actions[who]).astype(np.int8)
        conf[who] = np.where(hit, COLLAPSED_CONFIDENCE, conf[who])
    elif scenario == "constant":
        actions[who] = np.where(hit, 2, actions[who]).astype(np.int8)
        conf[who] = np.where(hit, CONSTANT_CONFIDENCE, conf[who])
    elif scenario == "majority-bias":
        actions[who] = np.where(hit & (rng.random(events) < 0.85), 0, actions[who]).astype(np.int8)
    elif scenario == "hold-dead-zone":
        hold = hit & (rng.random(events) < 0.92)
        actions[who] = np.where(hold, 2, actions[who]).astype(np.int8)
        conf[who] = np.where(hold, rng.uniform(0.45, 0.55, events), conf[who])
    elif scenario == "narrow":
        draw = rng.random(events)
        narrow = np.where(draw < 0.06, 0.2, np.where(draw < 0.12, 0.99, rng.uniform(0.70, 0.78, events)))
        conf[who] = np.where(hit, narrow, conf[who])
    elif scenario == "nan-burst":
        conf[who] = np.where(hit & (rng.random(events) < 0.05), np.nan, conf[who])
    elif scenario == "inactive-model":
        inactive[who] = hit & (rng.random(events) < 0.80)
    elif scenario == "disagreeing":
        for m in (target,) if target else _VOTERS:
            independent = rng.integers(0, 3, events).astype(np.int8)
            actions[m] = np.where(hit, independent, actions[m]).astype(np.int8)
            conf[m] = np.where(hit, _healthy_confidence(rng, independent, rng.normal(0, 1.5, events)), conf[m])
    elif scenario == "backwards":
        flipped = _actions(-reading[who], _THRESHOLD[who])
        actions[who] = np.where(hit, flipped, actions[who]).astype(np.int8)
    elif scenario == "copies":
        source = target or "xgb"
        for m in _VOTERS:
            if m != source:
                actions[m] = np.where(hit, actions[source], actions[m]).astype(np.int8)
                conf[m] = np.where(hit, conf[source], conf[m])
    elif scenario == "shared-bias":
        pushed = hit & (rng.random(events) < 0.80)  # one broken feature: the same events push every model
        for m in (target,) if target else MODELS:
            actions[m] = np.where(pushed, 0, actions[m]).astype(np.int8)
    elif scenario == "random":
        independent = rng.integers(0, 3, events).astype(np.int8)
        actions[who] = np.where(hit, independent, actions[who]).astype(np.int8)
        conf[who] = np.where(hit, rng.uniform(0.30, 0.99, events), conf[who])
    ensemble_conf = rng.uniform(0.75, 0.95, events)
    price = np.exp(path.log_price[np.arange(events), path.symbol])
    atr = rng.uniform(0.01, 0.04, events)
    vol_factor = rng.uniform(0.8, 1.3, events)
    divergence = rng.normal(0, 0.0005, events)
    funding = rng.normal(0.0001, 0.00005, events)
    fallback = rng.random(events) < 0.10
    symbols = path.symbol
    for i in range(events):
        ms = start_ms + i * spacing_ms
        moment = dt.datetime.fromtimestamp(ms / 1000, tz=UTC)
        breakdown: dict[str, Any] = {}
        consensus = 0
        for m in MODELS:
            code = int(actions[m][i])
            vote: dict[str, Any] = {"action": str(ACTION_NAMES[code]), "confidence": float(conf[m][i]),
                                    "model": _MODEL_LABEL[m]}
            if m == "patchtst":
                vote["shadow"] = True
            if inactive[m][i]:
                vote.update(inactive=True, inactive_reason="fallback_rules")
            elif m != "patchtst" and code == side[i]:
                consensus += 1
            breakdown[m] = vote
        if fallback[i]:
            breakdown["fallback"] = {"action": str(ACTION_NAMES[side[i]]), "confidence": 0.7,
                                     "reason": "consensus_not_met_or_hold_signal", "triggered_by": "rsi_macd_rules"}
        entry_price = float(price[i])
        direction = 1.0 if side[i] == 0 else -1.0
        payload = {
            "symbol": _SYMBOLS[int(symbols[i])],
            "side": str(ACTION_NAMES[side[i]]),
            "position_size_usd": 200.0,
            "leverage": 5,
            "entry_price": round(entry_price, 4),
            "stop_loss": round(entry_price * (1 - direction * 0.015), 4),
            "take_profit": round(entry_price * (1 + direction * 0.03), 4),
            "confidence": round(float(ensemble_conf[i]), 4),
            "timestamp": moment.isoformat(),
            "model": "ensemble",
            "meta_strategy": "ensemble_consensus",
            "consensus_count": consensus,
            "total_models": len(MODELS),
            "model_breakdown": breakdown,
            "atr_value": round(float(atr[i]), 5),
            "volatility_factor": round(float(vol_factor[i]), 4),
            "exchange_divergence": round(float(divergence[i]), 6),
            "funding_rate": round(float(funding[i]), 7),
            "regime": "trending" if i % 3 else "ranging",
        }
        yield Entry(
            id=f"{ms}-0",
            fields={
                "event_type": "trade.intent",
                "payload": json.dumps(payload),
                "trace_id": "",
                "correlation_id": f"sim-{seed}-{i:08d}",
                "timestamp": moment.replace(tzinfo=None).isoformat(timespec="microseconds"),
                "source": "ai-engine",
            },
        )


@dataclasses.dataclass(frozen=True)
class SimulateResult:
    """What ``simulate`` wrote and where."""

    scenario: str
    events: int
    target: str
    first_id: str | None
    last_id: str | None

    @property
    def status(self) -> Any:
        from qtsafe.status import Status

        return Status.PASS

    @property
    def summary(self) -> str:
        return (f"wrote {self.events:,} '{self.scenario}' trade.intent entries to {self.target} "
                f"({self.first_id} .. {self.last_id})")

    def to_dict(self) -> dict[str, Any]:
        return {"command": "simulate", "status": "PASS", "scenario": self.scenario, "events": self.events,
                "target": self.target, "first_id": self.first_id, "last_id": self.last_id}


def write_jsonl(path: Path, entries: Iterator[Entry], scenario: str) -> SimulateResult:
    """Write an export file atomically (the samples' format)."""
    lines = [entry.to_json() for entry in entries]
    atomic_write_text(path, "\n".join(lines) + "\n")
    first = json.loads(lines[0])["id"] if lines else None
    last = json.loads(lines[-1])["id"] if lines else None
    return SimulateResult(scenario, len(lines), str(path), first, last)


def write_stream(client: Any, key: str, entries: Iterator[Entry], scenario: str, *, url: str,
                 maxlen: int | None = None, chunk: int = 1000) -> SimulateResult:
    """XADD the entries with their IDs, pipelined in chunks (``MAXLEN ~`` when given, like the producer)."""
    import redis

    count = 0
    first = last = None
    pipe = client.pipeline(transaction=False)
    try:
        for entry in entries:
            if maxlen:
                pipe.xadd(key, entry.fields, id=entry.id, maxlen=maxlen, approximate=True)
            else:
                pipe.xadd(key, entry.fields, id=entry.id)
            first = first or entry.id
            last = entry.id
            count += 1
            if count % chunk == 0:
                pipe.execute()
        pipe.execute()
    except redis.ResponseError as exc:
        raise TelemetryError(f"Redis at {url} refused the simulated entries on {key}: {exc}") from exc
    except (redis.RedisError, OSError) as exc:
        raise TelemetryError(f"Redis at {url} (stream {key}): cannot write: {exc}") from exc
    return SimulateResult(scenario, count, f"{url} stream {key}", first, last)
