"""Issue 10 item 15: a sub-minute stall limit printed as ``limit 0 min`` in the gate, the monitor and doctor.

All three now format the limit with the one duration formatter (``45 s``, ``2 min``, ``1 h 30 min``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from qtsafe import monitor as mon
from qtsafe.doctor import run_doctor
from qtsafe.gate import stall_check
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.telemetry.window import window_between
from qtsafe.timeutil import format_duration
from tests.canary.conftest import Root
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock, activated, write_events  # noqa: F401 - fixture
from tests.monitor.test_monitor import producer


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (0.5, "0.5 s"), (1, "1 s"), (45, "45 s"), (59, "59 s"), (60, "1 min"), (90, "1 min 30 s"),
    (120, "2 min"), (600, "10 min"), (3600, "1 h"), (5400, "1 h 30 min"), (3605, "1 h 5 s"), (12_000, "3 h 20 min"),
    (21_600, "6 h"), (-30, "-30 s"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_gate_stall_finding_shows_a_sub_minute_limit(root: Root) -> None:
    settings = root.settings(**{"monitor.stall_limit": 45.0})
    now = dt.datetime(2026, 1, 10, 6, 0, tzinfo=dt.UTC)
    newest_ms = int((now - dt.timedelta(seconds=90)).timestamp() * 1000)
    finding = stall_check(newest_ms, window_between(now - dt.timedelta(hours=1)), settings, now, live=True)
    assert finding is not None and finding.check == "stalled"
    assert finding.message.endswith("(limit 45 s)"), finding.message
    default = stall_check(int((now - dt.timedelta(minutes=30)).timestamp() * 1000),
                          window_between(now - dt.timedelta(hours=1)), root.settings(), now, live=True)
    assert default is not None and default.message.endswith("(limit 10 min)"), default.message


def test_doctor_telemetry_fix_shows_a_sub_minute_limit(root: Root, fake_redis: Any, make_stream: Any) -> None:
    make_stream(fake_redis, "stalled", 100)  # newest entry 30 minutes old
    check = {c.check: c for c in run_doctor(root.settings(**{"monitor.stall_limit": 45.0})).checks}["telemetry"]
    assert check.severity == "WARN" and "older than the stall limit (45 s)" in check.fix, check.fix


def test_monitor_stall_violation_shows_a_sub_minute_limit(root: Root, activated: dict[str, Any],  # noqa: F811
                                                          fake_redis: Any) -> None:
    settings = root.settings(**{"monitor.stall_limit": 45.0})
    start = activated["at"]
    write_events(fake_redis, "healthy", 5, start - dt.timedelta(hours=2), start - dt.timedelta(hours=1), seed=99)
    clock = FastClock(start, producer(fake_redis, lambda elapsed: "healthy" if elapsed < 60 else None, start))
    result = mon.run_monitor(settings, RedisStreamSource(fake_redis, STREAM), clock=clock, interval=30)
    assert result.status is Status.FAIL
    stalled = [v for v in result.violations if v.startswith("telemetry stalled")]
    assert stalled and stalled[0].endswith("(limit 45 s)"), result.violations
