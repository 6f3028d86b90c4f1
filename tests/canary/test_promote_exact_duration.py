"""Issue 10 item 12: a watch of exactly the configured duration counts as complete, whatever the duration.

``monitoring_completed`` used to carry only ``duration_hours`` rounded to 4 decimals, and promote compared
hours with a 1e-9 tolerance: a 40 s watch (0.0111 h), 3 h 20 min (3.3333 h) and 5 h 20 min (5.3333 h)
came out shorter than themselves and promotion was refused forever. The record now carries exact
``duration_seconds``; records written before it (only ``duration_hours``) are read at face value,
fail-closed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from qtsafe import monitor as mon
from qtsafe.canary import lifecycle
from qtsafe.canary import promote as canary_promote
from qtsafe.canary.state import CanaryState
from qtsafe.status import Status, exit_code_for
from qtsafe.telemetry import RedisStreamSource
from tests.canary.conftest import Root, old_state
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock, activated, write_events  # noqa: F401 - fixture
from tests.monitor.test_monitor import producer


@pytest.mark.parametrize(("duration", "interval"), [(40.0, 5.0), (12_000.0, 1200.0), (19_200.0, 1200.0)],
                         ids=["40s", "3h20min", "5h20min"])
def test_a_full_watch_of_the_configured_duration_allows_promotion(
        root: Root, activated: dict[str, Any], fake_redis: Any, duration: float, interval: float,  # noqa: F811
) -> None:
    # The monitor itself writes the record (no hand-made journal): watch, then promote with the same settings.
    settings = root.settings(**{"monitor.duration": duration, "monitor.heartbeat_max_age": 2 * interval})
    start = activated["at"]
    # The producer ran before the canary (the gate needed its events): a stream exists, not judged.
    write_events(fake_redis, "healthy", 5, start - dt.timedelta(hours=2), start - dt.timedelta(hours=1), seed=99)
    clock = FastClock(start, producer(fake_redis, start=start))
    watched = mon.run_monitor(settings, RedisStreamSource(fake_redis, STREAM), clock=clock, interval=interval)
    assert watched.status is Status.COMPLETED, watched.summary
    record = root.records()[-1]
    assert record["action"] == "monitoring_completed"

    status = lifecycle.canary_status(settings)
    assert status.status is Status.WAIT and "awaiting promote" in status.summary, status.summary
    promoted = lifecycle.promote(settings, to=0.25, reason="clean watch", sleep=lambda s: None)
    assert promoted.status is Status.PASS, promoted.summary
    assert exit_code_for(promoted.status) == 0
    assert record["duration_seconds"] == duration  # exact
    assert record["duration_hours"] == round(duration / 3600, 4)  # kept for the runbooks' readers


def _records(**completed: Any) -> tuple[list[dict[str, Any]], CanaryState]:
    state = old_state("state_v1_active_dropin.json").replace(canary_id="c1", model="patchtst", share=0.1)
    records = [{"action": "canary_activated", "canary_id": "c1", "canary_model": "patchtst"},
               {"action": "monitoring_completed", "canary_id": "c1", "canary_model": "patchtst",
                "violations": None, "result": "safe", **completed}]
    return records, state


@pytest.mark.parametrize(("fields", "configured", "cleared"), [
    # Exact seconds: equal is enough, a second less is not.
    ({"duration_seconds": 40.0, "duration_hours": 0.0111}, 40.0, True),
    ({"duration_seconds": 12_000.0, "duration_hours": 3.3333}, 12_000.0, True),
    ({"duration_seconds": 19_200.0, "duration_hours": 5.3333}, 19_200.0, True),
    ({"duration_seconds": 21_600.0, "duration_hours": 6.0}, 21_600.0, True),
    ({"duration_seconds": 39.0, "duration_hours": 0.0108}, 40.0, False),
    ({"duration_seconds": 360.0, "duration_hours": 0.1}, 0.1 * 3600, True),  # "0.1h" parses to 360.00000000000006
    # Exact seconds win over the rounded hours, both ways.
    ({"duration_seconds": 7_199.0, "duration_hours": 2.0}, 7_200.0, False),
    # Legacy records (hours only) at face value: whole hours pass, rounded fractions fall short (fail-closed).
    ({"duration_hours": 6}, 21_600.0, True),
    ({"duration_hours": 2.0}, 7_200.0, True),
    ({"duration_hours": 0.0111}, 40.0, False),
    ({"duration_hours": 3.3333}, 12_000.0, False),
    # No usable duration at all is not a complete watch.
    ({}, 21_600.0, False),
    ({"duration_hours": float("nan")}, 21_600.0, False),
    ({"duration_hours": True}, 3_600.0, False),
    ({"duration_hours": "6"}, 21_600.0, False),
    ({"duration_seconds": None, "duration_hours": 6.0}, 21_600.0, False),
    ({"duration_seconds": float("inf")}, 21_600.0, False),
])
def test_completed_watch_duration_is_judged_in_seconds(fields: dict[str, Any], configured: float,
                                                       cleared: bool) -> None:
    records, state = _records(**fields)
    why = canary_promote._monitor_cleared(records, state, configured)
    assert (why is None) is cleared, why


def test_refusals_say_why_in_one_line() -> None:
    records, state = _records(duration_hours=0.0111)
    why = canary_promote._monitor_cleared(records, state, 40.0)
    assert why is not None and "rounded duration_hours" in why and "40 s" in why and "qtsafe monitor" in why
    records, state = _records(duration_seconds=30.0, duration_hours=0.0083)
    assert canary_promote._monitor_cleared(records, state, 40.0) == (
        "the last completed watch lasted 30 s, shorter than the configured 40 s")
    records, state = _records()
    assert "no usable duration" in str(canary_promote._monitor_cleared(records, state, 40.0))
    # Without a minimum (the caller does not ask), any clean completion counts, as before.
    assert canary_promote._monitor_cleared(records, state) is None
