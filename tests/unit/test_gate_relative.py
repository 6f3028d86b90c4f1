"""The gate's relative rule: a model far out of line with the others' consensus fails, a sane one does not."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pytest

from qtsafe.config import load_settings
from qtsafe.gate import run_quality_gate
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.telemetry.window import resolve_window
from tests.conftest import STREAM, xadd_entries

END = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
FLIP = {"BUY": "SELL", "SELL": "BUY"}


def _write(client: Any, entries: list[dict[str, Any]]) -> None:
    xadd_entries(client, entries, STREAM)


def _entries(scenario: str, events: int, *, market: str, seed: int, onset: float | None = None) -> list[dict[str, Any]]:
    return [{"id": e.id, "fields": dict(e.fields)} for e in generate(scenario, events, seed=seed, end=END,
                                                                      market=market, onset=onset)]


def _contrarian(entries: list[dict[str, Any]], share: float, seed: int, start: int = 0) -> list[dict[str, Any]]:
    """patchtst takes the opposite side in ``share`` of its BUY/SELL votes from event ``start`` on: its own view,
    a healthy shape (the same action shares and confidences), two to three times the others' opposite rate."""
    rng = np.random.default_rng(seed)
    out = []
    for k, entry in enumerate(entries):
        payload = json.loads(entry["fields"]["payload"])
        vote = payload["model_breakdown"].get("patchtst")
        if k >= start and isinstance(vote, dict) and vote.get("action") in FLIP and rng.random() < share:
            vote["action"] = FLIP[vote["action"]]
        out.append({"id": entry["id"], "fields": {**entry["fields"], "payload": json.dumps(payload)}})
    return out


def _gate(client: Any, tmp_path: Any, after: str, *, baseline: bool) -> Any:
    settings = load_settings(overrides={"base_dir": str(tmp_path)}, env={})
    return run_quality_gate(settings, RedisStreamSource(client, STREAM), resolve_window(after), mode="canary",
                            baseline_window=baseline, write_report=False, now=END)


def _cutover(entries: list[dict[str, Any]], index: int) -> str:
    ms = int(entries[index]["id"].split("-")[0])
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def _relative(result: Any, name: str = "patchtst") -> list[Any]:
    model = next(m for m in result.models if m.name == name)
    return [f for f in model.findings if f.check == "relative_hard_disagree"]


@pytest.mark.parametrize("market", ["plain", "regimes"])
@pytest.mark.parametrize("scenario", ["backwards", "random"])
@pytest.mark.parametrize("baseline", [False, True])
def test_a_wrong_mind_fails_with_its_numbers(scenario: str, market: str, baseline: bool, fake_redis,
                                             tmp_path) -> None:
    # 1,000 healthy events before the cutover, 1,000 of the scenario after it.
    entries = _entries(scenario, 2000, market=market, seed=5, onset=0.5)
    _write(fake_redis, entries)
    result = _gate(fake_redis, tmp_path, _cutover(entries, 1000), baseline=baseline)
    assert result.status is Status.FAIL, result.summary
    found = _relative(result)
    assert found, result.summary
    message = found[0].message
    assert message.startswith("patchtst: BUY/SELL against the others' consensus in ")
    assert "others " in message
    assert ("patchtst before the cutover" in message) is baseline
    assert ("no baseline before the cutover" in message) is (not baseline)
    evidence = next(m for m in result.models if m.name == "patchtst").relative["whole"]
    assert evidence["violated"] and evidence["low"] > evidence["limit"]
    if baseline:
        assert evidence["baseline_rate"] < 0.2  # before the cutover patchtst was healthy
    # The healthy models are not blamed for the broken one.
    assert [m.name for m in result.models if not m.passed] == ["patchtst"]


@pytest.mark.parametrize("market", ["plain", "regimes"])
@pytest.mark.parametrize("kind", ["healthy", "different"])
@pytest.mark.parametrize("baseline", [False, True])
def test_healthy_and_a_different_but_sane_model_pass(kind: str, market: str, baseline: bool, fake_redis,
                                                     tmp_path) -> None:
    entries = _entries("healthy", 2000, market=market, seed=9)
    if kind == "different":
        entries = _contrarian(entries, 0.12, seed=1, start=1000)
    _write(fake_redis, entries)
    result = _gate(fake_redis, tmp_path, _cutover(entries, 1000), baseline=baseline)
    assert result.status is Status.PASS, result.summary
    patch = next(m for m in result.models if m.name == "patchtst")
    whole = patch.relative["whole"]
    if kind == "different":
        others = sorted(o["hard_rate"] for o in whole["others"])
        # The sane contrarian really is out of line with most others, mildly: it must not be failed for it.
        assert whole["hard_rate"] > 1.5 * others[len(others) // 2], whole
    assert not whole["violated"]


def test_a_model_that_was_always_contrarian_is_not_failed_against_its_baseline(fake_redis, tmp_path) -> None:
    # Strongly contrarian before and after the cutover: it has not changed, the relative rule does not fail it
    # with a baseline; without one it is far out of line with the others and fails (the stricter margin).
    entries = _contrarian(_entries("healthy", 2000, market="plain", seed=4), 0.7, seed=2)
    _write(fake_redis, entries)
    with_baseline = _gate(fake_redis, tmp_path, _cutover(entries, 1000), baseline=True)
    assert not _relative(with_baseline), with_baseline.summary
    without = _gate(fake_redis, tmp_path, _cutover(entries, 1000), baseline=False)
    assert _relative(without), without.models[-2].relative["whole"]


def test_the_shadow_model_is_judged_against_the_voters(fake_redis, tmp_path) -> None:
    entries = _entries("backwards", 1000, market="plain", seed=3)
    _write(fake_redis, entries)
    result = _gate(fake_redis, tmp_path, _cutover(entries, 0), baseline=False)
    patch = next(m for m in result.models if m.name == "patchtst")
    assert patch.shadow and not patch.passed
    # The voters' own figures never count the shadow model in their consensus: they stay healthy.
    for other in patch.relative["whole"]["others"]:
        assert other["hard_rate"] < 0.2, other
