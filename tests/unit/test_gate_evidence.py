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
def test_a_breach_fails_only_when_established_in_any_window(hold: int, established: bool) -> None:
    t = Thresholds()
    actions, conf = _votes(hold)
    stats = model_stats(actions, conf, t)
    evidence = model_evidence(actions, conf, t, scope="s", alpha=t.evidence_alpha)
    majority = evidence["majority_bias"]
    assert majority.crossed and majority.established is established
    assert majority.estimate == pytest.approx(hold / 200) and majority.low < majority.estimate < majority.high
    for scope in ("whole window", "most recent 200 events"):
        (found,) = judge_stats(stats, t, subject="m", scope=scope, min_events=None, evidence=evidence)
        assert found.check == "majority_bias" and found.severity == (FAIL if established else WARN)
        if established:
            assert "; established: 95 % lower bound" in found.message
        else:
            assert "not established: 95 % lower bound" in found.message
    # Without evidence (the monitor and the model gate today) the rule reads as before.
    (plain,) = judge_stats(stats, t, subject="m", scope="s", min_events=None)
    assert plain.severity == FAIL and plain.message.endswith("(limit 70.0 %)")


def _whole_stream(client: Any, hold_share: float, n: int = 400) -> None:
    """``n`` healthy events in which nhits says HOLD in exactly ``hold_share`` of them, spread evenly."""
    entries = list(generate("healthy", n, seed=8, end=END))
    rng = np.random.default_rng(6)
    holds = set(rng.permutation(n)[: round(hold_share * n)].tolist())
    rows = []
    for k, entry in enumerate(entries):
        payload = json.loads(entry.fields["payload"])
        vote = payload["model_breakdown"]["nhits"]
        vote.pop("inactive", None)
        vote["action"] = "HOLD" if k in holds else ("BUY" if k % 2 else "SELL")
        rows.append({"id": entry.id, "fields": {**entry.fields, "payload": json.dumps(payload)}})
    xadd_entries(client, rows, STREAM)


@pytest.mark.parametrize(("share", "status"), [(0.72, Status.PASS), (0.90, Status.FAIL)])
def test_a_whole_window_majority_is_failed_only_when_established(share: float, status: Status, fake_redis,
                                                                 tmp_path) -> None:
    """Issue 12 section 3: the whole window's proportion rules fire on evidence too. 72 % HOLD over 400 events is
    past the 70 % limit by its estimate but not by its 95 % bound: a named warning, not a refusal."""
    _whole_stream(fake_redis, share)
    settings = load_settings(overrides={"base_dir": str(tmp_path)}, env={})
    result = run_quality_gate(settings, RedisStreamSource(fake_redis, STREAM), resolve_window("2000-01-01"),
                              mode="canary", now=END, write_report=False)
    nhits = next(m for m in result.models if m.name == "nhits")
    assert nhits.whole.action_share["HOLD"] == pytest.approx(share)
    whole = [f for f in nhits.findings if f.check == "majority_bias" and f.scope == "whole window"]
    assert [f.severity for f in whole] == [WARN if status is Status.PASS else FAIL], nhits.findings
    assert result.status is status, result.summary
    if status is Status.PASS:
        assert "warning" in result.summary and "majority_bias" in result.summary, result.summary


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


def _graded(conf: np.ndarray, check: str, row: str) -> tuple[str, bool]:
    t = Thresholds()
    actions = np.random.default_rng(3).integers(0, 3, conf.shape[0]).astype(np.int8)
    evidence = model_evidence(actions, conf, t, scope="whole window", alpha=t.evidence_alpha)
    found = {f.check: f for f in judge_stats(model_stats(actions, conf, t), t, subject="m", scope="whole window",
                                             min_events=None, evidence=evidence)}
    assert "bound 0." in found[check].message  # a bound in the rule's own units, not a percentage
    return found[check].severity, evidence[row].established


def test_the_spread_rules_fail_only_when_established() -> None:
    """Issue 12 section 3: std and P90-P10 likewise. A std of exactly 0.048 over 200 votes is below 0.05 by its
    estimate, not by its upper bound (~0.052): a warning; 0.02 over 1,000 votes is established. A narrow range
    whose 12 % outliers keep its P90 bound wide is a warning; a tight one is established. A constant output is
    hard evidence, judged by its value whatever the bounds."""
    rng = np.random.default_rng(11)
    z = rng.normal(0, 1, 200)
    assert _graded(0.7 + 0.048 * (z - z.mean()) / z.std(), "collapsed_confidence", "conf_std") == (WARN, False)
    assert _graded(np.clip(0.7 + rng.normal(0, 0.02, 1000), 0, 1), "collapsed_confidence", "conf_std") == (
        FAIL, True)
    # 200 votes evenly over 0.7 +- width, the outermost replaced by outliers (0.2 and 0.99), in random order:
    # P90-P10 is 1.6 width; its upper bound is past 0.12 when the spread is close to it, or when the outliers
    # reach into the quantiles' bounds.
    for width, outliers, expected in ((0.065, 0.12, (FAIL, True)), (0.07, 0.12, (WARN, False)),
                                      (0.05, 0.14, (WARN, False))):
        u = np.linspace(0.7 - width, 0.7 + width, 200)
        m = round(200 * outliers / 2)
        u = rng.permutation(np.concatenate([np.full(m, 0.2), u[m:200 - m], np.full(m, 0.99)]))
        assert _graded(u, "narrow_range", "conf_spread") == expected, (width, outliers)
    t = Thresholds()
    actions = rng.integers(0, 3, 200).astype(np.int8)
    constant = np.full(200, 0.5239)
    found = judge_stats(model_stats(actions, constant, t), t, subject="m", scope="whole window", min_events=None,
                        evidence=model_evidence(actions, constant, t, scope="w", alpha=t.evidence_alpha))
    assert [f.severity for f in found if f.check == "constant_output"] == [FAIL]
