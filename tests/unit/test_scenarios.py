"""Every simulate scenario maps to its verdict and the finding that names it (fakeredis stream)."""

from __future__ import annotations

import pytest

from qtsafe.config import load_settings
from qtsafe.gate import run_quality_gate
from qtsafe.scoreboard import run_scoreboard
from qtsafe.simulate import SCENARIOS
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.telemetry.window import resolve_window
from tests.conftest import STREAM

# scenario -> (gate status in canary mode, finding that must name it, scoreboard status)
TABLE = {
    "healthy": (Status.PASS, None, Status.GO),
    "collapsed": (Status.FAIL, ("patchtst", "constant_output"), Status.NO_GO),
    "late-collapse": (Status.FAIL, ("patchtst", "constant_output"), Status.NO_GO),
    "majority-bias": (Status.FAIL, ("xgb", "majority_bias"), Status.NO_GO),
    "hold-dead-zone": (Status.FAIL, ("nhits", "hold_dead_zone"), Status.NO_GO),
    "narrow": (Status.FAIL, ("lgbm", "narrow_range"), Status.NO_GO),
    "nan-burst": (Status.FAIL, ("xgb", "invalid_confidence"), Status.NO_GO),
    "inactive-model": (Status.FAIL, ("nhits", "mostly_inactive"), Status.NO_GO),
    "disagreeing": (Status.PASS, None, Status.WAIT),
    "stalled": (Status.FAIL, ("window", "stalled"), Status.NO_GO),
    "constant": (Status.FAIL, ("patchtst", "constant_output"), Status.NO_GO),
    # A healthy shape with a wrong mind: only the relative rule (issue 12) fails these.
    "backwards": (Status.FAIL, ("patchtst", "relative_hard_disagree"), Status.NO_GO),
    "random": (Status.FAIL, ("patchtst", "relative_hard_disagree"), Status.NO_GO),
    # Fleet-wide failures: the gate judges models one by one (copies pass it), the scoreboard the ensemble.
    "copies": (Status.PASS, None, Status.WAIT),
    "shared-bias": (Status.FAIL, ("xgb", "majority_bias"), Status.NO_GO),
}


def test_table_covers_every_scenario() -> None:
    assert set(TABLE) == set(SCENARIOS)


@pytest.mark.parametrize("scenario", list(TABLE))
def test_scenario_verdict(scenario: str, fake_redis, make_stream, tmp_path) -> None:
    gate_status, finding, board_status = TABLE[scenario]
    make_stream(fake_redis, scenario, 1600, seed=11)
    settings = load_settings(overrides={"base_dir": str(tmp_path)}, env={})
    source = RedisStreamSource(fake_redis, STREAM)
    window = resolve_window("2000-01-01T00:00:00Z")
    result = run_quality_gate(settings, source, window, mode="canary")
    assert result.status is gate_status, result.summary
    names = {(f.subject, f.check) for f in result.all_findings}
    if finding is None:
        assert names == set()
    else:
        assert finding in names, names
    board = run_scoreboard(settings, source, window)
    assert board.status is board_status, board.summary


def test_late_collapse_is_caught_only_by_the_recent_window(fake_redis, make_stream, tmp_path) -> None:
    # 2,500 healthy then 1,500 stuck: the whole window alone looks fine; the recent window must fail it.
    make_stream(fake_redis, "late-collapse", 4000, seed=3)
    settings = load_settings(overrides={"base_dir": str(tmp_path)}, env={})
    result = run_quality_gate(settings, RedisStreamSource(fake_redis, STREAM),
                              resolve_window("2000-01-01"), mode="canary", write_report=False)
    patch = next(m for m in result.models if m.name == "patchtst")
    scopes = {f.scope for f in patch.findings}
    assert scopes == {"most recent 200 events"}
    assert result.status is Status.FAIL
