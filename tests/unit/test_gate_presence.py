"""Presence (issue 12 §5): a model absent from most breakdowns fails the gate and the scoreboard, however many
votes it has; absence is counted apart from inactivity."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pytest

from qtsafe.checks.quality import judge_presence
from qtsafe.config import Thresholds, load_settings
from qtsafe.gate import run_quality_gate
from qtsafe.scoreboard import run_scoreboard
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.telemetry.window import resolve_window
from tests.conftest import STREAM, xadd_entries

END = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


def _stream(client: Any, absent_share: float, *, events: int = 1000) -> None:
    rng = np.random.default_rng(17)
    entries = []
    for entry in generate("healthy", events, seed=21, end=END):
        payload = json.loads(entry.fields["payload"])
        if rng.random() < absent_share:
            del payload["model_breakdown"]["nhits"]
        entries.append({"id": entry.id, "fields": {**entry.fields, "payload": json.dumps(payload)}})
    xadd_entries(client, entries, STREAM)


def _settings(tmp_path: Any, **thresholds: Any) -> Any:
    overrides = {"base_dir": str(tmp_path), **{f"thresholds.{k}": v for k, v in thresholds.items()}}
    return load_settings(overrides=overrides, env={})


@pytest.mark.parametrize(("absent", "fails"), [(0.0, False), (0.35, False), (0.6, True)])
def test_presence_below_the_share_fails(absent: float, fails: bool, fake_redis, tmp_path) -> None:
    # 1,000 events: at 60 % absent nhits still has ~400 votes, over the 200 a canary gate needs.
    _stream(fake_redis, absent)
    settings = _settings(tmp_path)
    source = RedisStreamSource(fake_redis, STREAM)
    gate = run_quality_gate(settings, source, resolve_window("2000-01-01"), mode="canary", write_report=False,
                            now=END)
    nhits = next(m for m in gate.models if m.name == "nhits")
    assert nhits.whole.n >= 200
    found = [f for f in nhits.findings if f.check == "low_presence"]
    presence = nhits.to_dict()["presence"]
    assert presence["events"] == 1000 and presence["present"] == nhits.defects.present
    if not fails:
        assert not found and gate.status is Status.PASS, gate.summary
        return
    assert gate.status is Status.FAIL
    assert found[0].message == (f"nhits: present in {presence['present']} of 1000 events "
                                f"({presence['present'] / 10:.1f} %, limit 50.0 %); absent from the model breakdown "
                                "in the rest")
    board = run_scoreboard(settings, source, resolve_window("2000-01-01"), write_report_files=False, now=END)
    assert board.status is Status.NO_GO and "low_presence" in {f.check for f in board.all_findings}


def test_presence_is_a_setting(fake_redis, tmp_path) -> None:
    _stream(fake_redis, 0.35)
    settings = _settings(tmp_path, presence_min=0.9)
    gate = run_quality_gate(settings, RedisStreamSource(fake_redis, STREAM), resolve_window("2000-01-01"),
                            mode="canary", write_report=False, now=END)
    nhits = next(m for m in gate.models if m.name == "nhits")
    assert gate.status is Status.FAIL and [f.check for f in nhits.findings] == ["low_presence"], gate.summary
    assert settings.loosened() == []  # raising presence_min is stricter
    assert [x["rule"] for x in _settings(tmp_path, presence_min=0.3).loosened()] == ["thresholds.presence_min"]


def test_presence_rule_edges() -> None:
    t = Thresholds()
    assert judge_presence(0, 0, t, subject="m") == []  # no events: the minimum-events rule speaks
    assert judge_presence(50, 100, t, subject="m") == []  # exactly the limit passes, as "fewer than" says
    assert [f.check for f in judge_presence(49, 100, t, subject="m")] == ["low_presence"]
