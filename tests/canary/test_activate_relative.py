"""Activation refuses a model the relative rule fails, through the real gate and the fake systemctl."""

from __future__ import annotations

import pytest

from qtsafe.canary import lifecycle
from qtsafe.status import Status, exit_code_for
from qtsafe.telemetry import RedisStreamSource
from tests.canary.conftest import Root
from tests.conftest import STREAM


@pytest.mark.parametrize("scenario", ["backwards", "healthy"])
def test_activation_runs_the_relative_rule(scenario: str, root: Root, fake_redis, make_stream) -> None:
    # 1,000 fresh events (newest now), all after the unit's ActiveEnterTimestamp: the real gate judges them all.
    make_stream(fake_redis, scenario, 1000, seed=13)
    root.control(initial="active")
    live_before = root.snapshot(live_only=True)
    root.clear_calls()
    result = lifecycle.activate(root.settings(), model="patchtst", after="auto", sleep=lambda s: None,
                                open_source=lambda settings: RedisStreamSource(fake_redis, STREAM))
    if scenario == "healthy":
        # The same path with a sane patchtst activates: the refusal below is the relative rule's doing.
        assert result.status is Status.PASS, result.summary
        return
    assert result.status is Status.BLOCKED and exit_code_for(result.status) == 2
    assert result.summary.startswith("CANARY BLOCKED: quality gate did not pass: FAIL: quality gate (canary) - "
                                     "patchtst: BUY/SELL against the others' consensus in "), result.summary
    assert result.summary.endswith("(nothing changed)"), result.summary
    # Refused in the preflight: no restart, no drop-in, no weights, no journal record.
    assert "restart" not in root.verbs() and "daemon-reload" not in root.verbs()
    assert root.snapshot(live_only=True) == live_before
    assert not root.dropin.exists() and not (root.base / "data" / "qsc_canary_weights.json").exists()
    assert root.actions() == []
