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
from qtsafe.timeutil import UTC, utc_now

SCENARIOS: dict[str, str] = {
    "healthy": "four models (patchtst in shadow) with varied, agreeing but not identical output",
    "collapsed": "patchtst stuck at confidence 0.6150 (the fleet's collapsed PatchTST)",
    "late-collapse": "healthy for the first 62.5 % of events, then patchtst stuck at 0.6150",
    "majority-bias": "xgb says BUY in ~90 % of events",
    "hold-dead-zone": "nhits says HOLD in ~92 % of events with confidence in [0.45, 0.55]",
    "narrow": "lgbm confidence mostly within 0.70-0.78 (P90-P10 below 0.12, std above 0.05)",
    "nan-burst": "xgb emits NaN confidence in ~5 % of events",
    "inactive-model": "nhits marked inactive (fallback_rules) in ~80 % of events",
    "disagreeing": "voting models pick actions independently: frequent BUY-vs-SELL events",
    "stalled": "healthy output, but the newest event is 30 minutes old",
}
MODELS = ("xgb", "lgbm", "nhits", "patchtst")
_MODEL_LABEL = {"xgb": "xgboost", "lgbm": "lgbm", "nhits": "nhits", "patchtst": "patchtst_shadow"}
_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "ADAUSDT", "XRPUSDT")
COLLAPSED_CONFIDENCE = 0.6150280237197876
ACTION_NAMES = np.array(["BUY", "SELL", "HOLD"])


@dataclasses.dataclass(frozen=True)
class Entry:
    """One stream entry: its ID and its string fields."""

    id: str
    fields: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "fields": self.fields}, ensure_ascii=False)


def _healthy_actions(rng: np.random.Generator, side: np.ndarray) -> np.ndarray:
    # 48 % the ensemble's side, 49 % HOLD, 3 % the opposite side: agreement ~73 % and hard disagree ~6.5 %,
    # both more than 6 standard errors inside their limits in a 200-event window, so a healthy watch of
    # 720 checks does not trip the ensemble rules by chance (65/30/5 sat ~3 standard errors from them).
    draw = rng.random(side.shape[0])
    opposite = 1 - side
    return np.where(draw < 0.48, side, np.where(draw < 0.97, 2, opposite)).astype(np.int8)


def _healthy_confidence(rng: np.random.Generator, actions: np.ndarray) -> np.ndarray:
    n = actions.shape[0]
    return np.where(actions == 2, rng.uniform(0.40, 0.70, n), rng.uniform(0.55, 0.97, n))


def generate(
    scenario: str,
    events: int,
    *,
    seed: int = 7,
    end: dt.datetime | None = None,
    spacing_ms: int = 1000,
) -> Iterator[Entry]:
    """Yield ``events`` entries of ``scenario``, oldest first, the newest at ``end`` (default now)."""
    if scenario not in SCENARIOS:
        raise InputError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    if events < 1:
        raise InputError("--events must be at least 1")
    if spacing_ms < 1:
        raise InputError("spacing must be at least 1 ms")
    rng = np.random.default_rng(seed)
    end = end or utc_now()
    if scenario == "stalled":
        end = end - dt.timedelta(minutes=30)
    end_ms = int(end.timestamp() * 1000)
    start_ms = end_ms - (events - 1) * spacing_ms
    if start_ms <= 0:
        raise InputError("too many events for that spacing: the first would fall before 1970")
    side = rng.integers(0, 2, events).astype(np.int8)
    actions = {m: _healthy_actions(rng, side) for m in MODELS}
    conf = {m: _healthy_confidence(rng, actions[m]) for m in MODELS}
    inactive = {m: np.zeros(events, dtype=bool) for m in MODELS}
    if scenario == "collapsed":
        actions["patchtst"] = side.copy()
        conf["patchtst"] = np.full(events, COLLAPSED_CONFIDENCE)
    elif scenario == "late-collapse":
        cut = int(events * 0.625)
        actions["patchtst"][cut:] = side[cut:]
        conf["patchtst"][cut:] = COLLAPSED_CONFIDENCE
    elif scenario == "majority-bias":
        actions["xgb"] = np.where(rng.random(events) < 0.85, 0, actions["xgb"]).astype(np.int8)
    elif scenario == "hold-dead-zone":
        hold = rng.random(events) < 0.92
        actions["nhits"] = np.where(hold, 2, actions["nhits"]).astype(np.int8)
        conf["nhits"] = np.where(hold, rng.uniform(0.45, 0.55, events), conf["nhits"])
    elif scenario == "narrow":
        draw = rng.random(events)
        conf["lgbm"] = np.where(draw < 0.06, 0.2, np.where(draw < 0.12, 0.99, rng.uniform(0.70, 0.78, events)))
    elif scenario == "nan-burst":
        conf["xgb"] = np.where(rng.random(events) < 0.05, np.nan, conf["xgb"])
    elif scenario == "inactive-model":
        inactive["nhits"] = rng.random(events) < 0.80
    elif scenario == "disagreeing":
        for m in ("xgb", "lgbm", "nhits"):
            actions[m] = rng.integers(0, 3, events).astype(np.int8)
            conf[m] = _healthy_confidence(rng, actions[m])
    ensemble_conf = rng.uniform(0.75, 0.95, events)
    price = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, events)))
    atr = rng.uniform(0.01, 0.04, events)
    vol_factor = rng.uniform(0.8, 1.3, events)
    divergence = rng.normal(0, 0.0005, events)
    funding = rng.normal(0.0001, 0.00005, events)
    fallback = rng.random(events) < 0.10
    symbols = rng.integers(0, len(_SYMBOLS), events)
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
