"""Outcome evidence for canary tests that are about something else (stages, crashes): a passing verdict, and
a JSONL export in which every model votes alike, so a promotion in a subprocess has outcomes to pass on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.config import Outcomes
from qtsafe.outcome_evidence import OutcomeEvidence, outcome_evidence
from qtsafe.telemetry.parse import TelemetryBuilder


def agreeing_entries(start_ms: int, end_ms: int, events: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    """Stream entries in [start_ms, end_ms] where the canary (patchtst) and the others always vote alike."""
    rng = np.random.default_rng(seed)
    times = np.linspace(start_ms, end_ms, events).astype(np.int64)
    price = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.001, events)))
    out = []
    for i, ms in enumerate(times.tolist()):
        action = "BUY" if rng.random() < 0.5 else "SELL"
        votes = {m: {"action": action, "confidence": 0.8} for m in ("xgb", "lgbm", "nhits", "patchtst")}
        payload = {"symbol": "BTCUSDT", "side": action, "entry_price": round(float(price[i]), 4),
                   "model_breakdown": votes}
        out.append({"id": f"{ms}-{i}", "fields": {"event_type": "trade.intent", "payload": json.dumps(payload)}})
    return out


def write_agreeing(path: Path, start_ms: int, end_ms: int, events: int = 400) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in agreeing_entries(start_ms, end_ms, events)))
    return path


def passing_outcomes(settings: Any, state: Any, now: Any) -> OutcomeEvidence:
    """An ``outcome_check`` whose verdict is PASS (computed, not faked: every model agrees on every event)."""
    entries = agreeing_entries(0, 3_600_000)
    builder = TelemetryBuilder()
    builder.feed([(e["id"].encode(), [b"event_type", b"trade.intent", b"payload", e["fields"]["payload"].encode()])
                  for e in entries])
    return outcome_evidence(builder.build(), Outcomes(horizon=60), canary=state.model)
