"""judge_models gives the same verdicts whether the models are judged in line or on threads (large windows)."""

from __future__ import annotations

import pytest

from qtsafe import judge
from qtsafe.config import Thresholds
from qtsafe.simulate import generate
from qtsafe.telemetry.parse import TelemetryBuilder


@pytest.mark.parametrize("scenario", ["healthy", "backwards", "majority-bias"])
def test_threaded_and_inline_judging_agree(scenario: str, monkeypatch: pytest.MonkeyPatch) -> None:
    builder = TelemetryBuilder()
    builder.feed([(e.id.encode(), [x.encode() for kv in e.fields.items() for x in kv])
                  for e in generate(scenario, 1500, seed=4)])
    telemetry = builder.build()
    t = Thresholds()
    monkeypatch.setattr(judge, "_THREADED_EVENTS", 10**9)
    inline, inline_findings = judge.judge_models(telemetry, t, min_events=200, only=["xgb", "nope", "patchtst"])
    monkeypatch.setattr(judge, "_THREADED_EVENTS", 0)
    threaded, threaded_findings = judge.judge_models(telemetry, t, min_events=200,
                                                     only=["xgb", "nope", "patchtst"])
    assert [v.name for v in threaded] == [v.name for v in inline] == ["xgb", "patchtst"]  # the order asked for
    assert [v.findings for v in threaded] == [v.findings for v in inline]
    assert [v.relative for v in threaded] == [v.relative for v in inline]
    assert threaded_findings == inline_findings and [f.check for f in inline_findings] == ["model_missing"]
