"""The gate's proportion rules with evidence (issue 12 §3): one look over the whole window fails on the estimate;
the recent window fails only an established breach and reports an unestablished one as WARN, never silently."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pytest

from qtsafe.checks.quality import judge_stats, model_stats
from qtsafe.checks.rule_evidence import model_evidence
from qtsafe.config import Thresholds, load_settings
from qtsafe.findings import FAIL, WARN
from qtsafe.gate import run_quality_gate
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.telemetry.window import resolve_window
from qtsafe.votes import BUY, HOLD, SELL
from tests.conftest import STREAM, xadd_entries

END = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


def _votes(hold: int, n: int = 200, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    actions = np.array([HOLD] * hold + [BUY, SELL] * ((n - hold) // 2) + [BUY] * ((n - hold) % 2), dtype=np.int8)
    return rng.permutation(actions), rng.uniform(0.55, 0.95, n)


@pytest.mark.parametrize(("hold", "established"), [(148, False), (184, True)])
def test_the_same_breach_fails_the_whole_window_and_is_graded_in_the_recent_one(hold: int, established: bool) -> None:
    t = Thresholds()
    actions, conf = _votes(hold)
    stats = model_stats(actions, conf, t)
    evidence = model_evidence(actions, conf, t, scope="s", alpha=t.evidence_alpha)
    majority = evidence["majority_bias"]
    assert majority.crossed and majority.established is established
    assert majority.estimate == pytest.approx(hold / 200) and majority.low < majority.estimate < majority.high
    whole = judge_stats(stats, t, subject="m", scope="whole window", min_events=None, evidence=evidence)
    recent = judge_stats(stats, t, subject="m", scope="most recent 200 events", min_events=None, evidence=evidence,
                         established_only=True)
    (w,), (r,) = whole, recent
    assert w.check == r.check == "majority_bias" and w.severity == FAIL
    assert r.severity == (FAIL if established else WARN)
    if established:
        assert "; established: 95 % lower bound" in r.message
    else:
        assert "not established: 95 % lower bound" in r.message
        assert "one look over the whole window fails on the estimate" in w.message
    # Without evidence (the monitor and the model gate today) the rule reads as before.
    (plain,) = judge_stats(stats, t, subject="m", scope="s", min_events=None)
    assert plain.severity == FAIL and plain.message.endswith("(limit 70.0 %)")


def _stream(client: Any, hold_share: float) -> None:
    """1,000 healthy events; in the last 200, nhits says HOLD in exactly ``hold_share`` of them."""
    entries = list(generate("healthy", 1000, seed=8, end=END))
    rng = np.random.default_rng(5)
    holds = set(rng.permutation(200)[: round(hold_share * 200)].tolist())
    rows = []
    for k, entry in enumerate(entries):
        payload = json.loads(entry.fields["payload"])
        if k >= 800:
            vote = payload["model_breakdown"]["nhits"]
            vote.pop("inactive", None)
            vote["action"] = "HOLD" if k - 800 in holds else ("BUY" if k % 2 else "SELL")
        rows.append({"id": entry.id, "fields": {**entry.fields, "payload": json.dumps(payload)}})
    xadd_entries(client, rows, STREAM)


@pytest.mark.parametrize(("share", "status", "severity"), [(0.74, Status.PASS, WARN), (0.92, Status.FAIL, FAIL)])
def test_a_recent_majority_is_failed_only_when_established(share: float, status: Status, severity: str, fake_redis,
                                                            tmp_path) -> None:
    _stream(fake_redis, share)
    settings = load_settings(overrides={"base_dir": str(tmp_path)}, env={})
    result = run_quality_gate(settings, RedisStreamSource(fake_redis, STREAM), resolve_window("2000-01-01"),
                              mode="canary", now=END)
    nhits = next(m for m in result.models if m.name == "nhits")
    assert nhits.recent.action_share["HOLD"] == pytest.approx(share)
    found = [f for f in nhits.findings if f.check == "majority_bias"]
    assert [(f.severity, f.scope) for f in found] == [(severity, "most recent 200 events")], nhits.findings
    assert result.status is status, result.summary
    if status is Status.PASS:
        # Reported, not silently green: in the summary line, the report and the JSON.
        assert result.summary.endswith("all checks green (1 warning: majority_bias)"), result.summary
    rows = {(ev.rule, ev.scope): ev for ev in nhits.evidence}
    recent = rows[("majority (HOLD)", "most recent 200 events")]
    assert recent.crossed and recent.established is (status is Status.FAIL)
    assert result.report_path is not None and result.json_path is not None
    data = json.loads(result.json_path.read_text())
    model = next(m for m in data["models"] if m["name"] == "nhits")
    row = next(r for r in model["evidence"] if r["rule"] == "majority (HOLD)" and r["scope"] == recent.scope)
    assert row["estimate"] == pytest.approx(share) and row["limit"] == 0.7 and row["low"] < share < row["high"]
    markdown = result.report_path.read_text()
    assert "## Evidence per rule" in markdown
    line = next(x for x in markdown.splitlines() if x.startswith("| nhits | majority (HOLD) | most recent 200"))
    assert f"{share * 100:.1f} %" in line and "above 70.0 %" in line
    assert ("established" if status is Status.FAIL else "estimate only") in line
