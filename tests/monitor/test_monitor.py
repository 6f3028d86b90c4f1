"""The 6-hour watch in seconds: healthy, collapse, stall, flaky Redis, crash and resume, stop, watchdog."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from qtsafe import monitor as mon
from qtsafe.canary import state as st
from qtsafe.errors import InputError, StateError, TelemetryError
from qtsafe.status import Status, exit_code_for
from qtsafe.telemetry import RedisStreamSource
from tests.canary.conftest import Root
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock, write_events

PER_TICK = 40


def producer(client: Any, scenario_at: Any = lambda elapsed: "healthy", start: dt.datetime | None = None):
    """Between ticks, write PER_TICK events of the scenario the elapsed time calls for (None: write nothing)."""

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        elapsed = (clock.t - start).total_seconds() if start else 0
        scenario = scenario_at(elapsed)
        if scenario:
            write_events(client, scenario, PER_TICK, before, clock.t, seed=clock.sleeps)

    return on_sleep


def run(activated: dict[str, Any], client: Any, clock: FastClock, source: Any = None, **kw: Any) -> mon.MonitorResult:
    settings = activated["settings"]
    if not client.exists(STREAM):  # the producer ran before the canary (the gate needed its events): not judged
        write_events(client, "healthy", 5, activated["at"] - dt.timedelta(hours=2),
                     activated["at"] - dt.timedelta(hours=1), seed=99)
    return mon.run_monitor(settings, source or RedisStreamSource(client, STREAM), clock=clock, **kw)


def test_healthy_six_hours_completes(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    write_events(fake_redis, "healthy", 400, start - dt.timedelta(minutes=5), start - dt.timedelta(seconds=1),
                 seed=1)  # before activation: not judged
    clock = FastClock(start, producer(fake_redis, start=start))
    result = run(activated, fake_redis, clock, interval=60)
    assert result.status is Status.COMPLETED, result.summary
    assert exit_code_for(result.status) == 0
    assert result.checks == 361 and result.events == 360 * PER_TICK  # the pre-activation 400 are not judged
    assert result.summary.startswith("COMPLETED: canary patchtst watched 6.00 h, 361 checks")
    record = root.records()[-1]
    assert record["action"] == "monitoring_completed" and record["result"] == "safe"
    assert record["checks_performed"] == 361 and record["duration_hours"] == 6 and record["violations"] is None
    assert root.actions() == ["canary_activated", "monitoring_started", "monitoring_completed"]
    report = result.report_path.read_text()
    assert report.startswith("# COMPLETED") and "## Timeline" in report
    assert st.active_canary(activated["settings"]) is not None  # completion does not touch the canary
    assert root.verbs() == []


def test_collapse_at_hour_three_rolls_back_within_a_tick(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    clock = FastClock(start, producer(fake_redis, lambda e: "collapsed" if e > 3 * 3600 else "healthy", start))
    result = run(activated, fake_redis, clock, interval=60)
    assert result.status is Status.FAIL
    # Collapse starts after check 181 (hour 3); the 200-event window (5 ticks of 40) is all-collapsed 5 later.
    collapse_tick = 181
    assert collapse_tick <= result.checks <= collapse_tick + 5
    # A stuck confidence is hard evidence: the constant-output rule fires by value, at once, while the
    # 200-event window is still partly healthy (P10 = P90 once ~90 % of it is stuck).
    assert result.violations[0].startswith("patchtst: constant output"), result.violations
    assert result.rollback["status"] == "PASS"
    assert "systemctl daemon-reload" in root.verbs() and "systemctl restart" in root.verbs()
    assert not root.dropin.exists()
    rb = [r for r in root.records() if r["action"] == "rollback_executed"][-1]
    assert rb["trigger"] == "qsc_monitor_violation" and rb["violations"] == list(result.violations)
    assert st.active_canary(activated["settings"]) is None
    assert result.report_path.name.startswith("qsc_monitor_final_")


def test_stall_rolls_back(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    clock = FastClock(start, producer(fake_redis, lambda e: "healthy" if e < 3600 else None, start))
    result = run(activated, fake_redis, clock, interval=60)
    assert result.status is Status.FAIL
    assert result.violations[0].startswith("telemetry stalled: no new trade.intent for 11.0 min")
    assert result.rollback["status"] == "PASS"


class FlakySource:
    """Every other read fails as a dropped Redis connection would."""

    def __init__(self, inner: RedisStreamSource) -> None:
        self.inner = inner
        self.calls = 0

    def pages(self, *args: Any, **kwargs: Any):
        self.calls += 1
        if self.calls % 2 == 0:
            raise TelemetryError("Redis at redis://127.0.0.1:6379/0 (stream x): unreachable (Connection refused)")
        return self.inner.pages(*args, **kwargs)


def test_every_other_tick_failing_exhausts_the_total_budget(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    clock = FastClock(start, producer(fake_redis, start=start))
    result = run(activated, fake_redis, clock, source=FlakySource(RedisStreamSource(fake_redis, STREAM)), interval=30)
    assert result.status is Status.FAIL
    assert result.checks == 10  # errors on checks 2, 4, 6, 8, 10: never 3 in a row, 5 in all
    assert result.violations == ("telemetry unreliable: Redis errors on 5 checks in all (limit 5)",)


def test_consecutive_errors(root: Root, activated, fake_redis) -> None:
    class Down:
        def pages(self, *a: Any, **k: Any):
            raise TelemetryError("Redis at redis://x (stream y): timed out")

    clock = FastClock(activated["at"])
    result = run(activated, fake_redis, clock, source=Down(), interval=30)
    assert result.checks == 3
    assert result.violations == ("telemetry lost: Redis errors on 3 consecutive checks (limit 3)",)


class Crash(BaseException):
    pass


def crashing_at(tick: int, feed: Any) -> Any:
    """A clock hook that feeds the stream and dies (like SIGKILL) after sleep number ``tick``."""

    def hook(clock: FastClock, before: dt.datetime) -> None:
        feed(clock, before)
        if clock.sleeps == tick:
            raise Crash()

    return hook


def test_killed_and_restarted_resumes_the_same_window(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    feed = producer(fake_redis, start=start)

    clock = FastClock(start, crashing_at(50, feed))
    with pytest.raises(Crash):
        run(activated, fake_redis, clock, interval=60)
    saved = json.loads(mon.monitor_state_path(activated["settings"]).read_text())
    assert saved["checks"] == 50
    # A restart an instant later, same canary: the same window, the history carried on.
    clock2 = FastClock(clock.t, feed)
    result = run(activated, fake_redis, clock2, interval=60)
    assert result.status is Status.COMPLETED and result.resumed
    assert result.checks == 361 - 1 + 1  # the crashed sleep's tick is re-run on resume: 50 + 311
    assert result.events == 360 * PER_TICK
    assert root.actions().count("monitoring_started") == 1
    # The timeline of the first run came back from its append-only file: one row a check, in order.
    assert [row["index"] for row in result.timeline] == list(range(1, result.checks + 1))
    assert not mon.monitor_timeline_path(activated["settings"]).exists()  # cleared with the completed watch


def test_sigterm_style_stop_exits_3_and_journals(root: Root, activated, fake_redis) -> None:
    clock = FastClock(activated["at"], producer(fake_redis, start=activated["at"]))
    stop_after = {"n": 0}

    def stop() -> str | None:
        stop_after["n"] += 1
        return "received SIGTERM" if stop_after["n"] >= 6 else None

    result = run(activated, fake_redis, clock, interval=60, stop_requested=stop)
    assert result.status is Status.STOPPED and exit_code_for(result.status) == 3
    record = root.records()[-1]
    assert record["action"] == "monitoring_stopped" and record["reason"] == "received SIGTERM"
    assert record["result"] == "unmonitored"
    assert st.active_canary(activated["settings"]) is not None


def test_no_active_canary_is_an_error(root: Root, fake_redis) -> None:
    with pytest.raises(StateError, match="no active canary"):
        mon.run_monitor(root.settings(), RedisStreamSource(fake_redis, STREAM),
                        clock=FastClock(dt.datetime.now(dt.UTC)))


def test_watchdog_rolls_back_a_canary_whose_heartbeat_is_stale(root: Root, activated) -> None:
    settings = activated["settings"]
    st.write_heartbeat(settings, canary_id=activated["canary"].canary_id, canary_model="patchtst")
    fresh = mon.run_watchdog(settings)
    assert fresh.status is Status.PASS and fresh.summary.startswith("OK: monitor of canary patchtst alive")
    stale = dataclasses.replace(settings, monitor=dataclasses.replace(settings.monitor, heartbeat_max_age=0.0))
    import time
    time.sleep(0.01)
    result = mon.run_watchdog(stale)
    assert result.status is Status.FAIL
    assert result.summary.startswith("FAIL: monitor of canary patchtst is dead (monitor heartbeat is")
    assert result.rollback["status"] == "PASS"
    rb = root.records()[-1]
    assert rb["action"] == "rollback_executed" and rb["trigger"] == "qsc_monitor_watchdog"
    assert mon.run_watchdog(settings).summary == "OK: no active canary; nothing to watch"


def test_watchdog_grace_then_rollback_without_any_heartbeat(root: Root, activated) -> None:
    settings = activated["settings"]
    early = mon.run_watchdog(settings, now=activated["at"] + dt.timedelta(seconds=30))
    assert early.status is Status.WAIT
    late = mon.run_watchdog(settings, now=activated["at"] + dt.timedelta(hours=1))
    assert late.status is Status.FAIL and "no monitor heartbeat" in late.summary


def test_replay_reports_when_rules_would_fire(root: Root, fake_redis) -> None:
    base = dt.datetime(2026, 1, 10, 6, 0, tzinfo=dt.UTC)
    write_events(fake_redis, "healthy", 600, base, base + dt.timedelta(minutes=30), seed=1)
    write_events(fake_redis, "collapsed", 600, base + dt.timedelta(minutes=30), base + dt.timedelta(minutes=60),
                 seed=2)
    first = fake_redis.xrange(STREAM, count=1)[0][0].decode()
    last = fake_redis.xrevrange(STREAM, count=1)[0][0].decode()
    before = root.snapshot()
    result = mon.run_replay(root.settings(), RedisStreamSource(fake_redis, STREAM), first, last, model="patchtst")
    assert result.status is Status.FAIL
    fired = dt.datetime.fromisoformat(result.firings[0]["at"].replace("Z", "+00:00"))
    # 20 events a minute, a 200-event window: the spread rule fires once ~80 % of the window is collapsed.
    assert base + dt.timedelta(minutes=30) < fired <= base + dt.timedelta(minutes=40)
    assert "patchtst" in result.firings[0]["violations"][0]
    assert root.snapshot() == before and root.verbs() == []  # replay changes nothing
    healthy = mon.run_replay(root.settings(), RedisStreamSource(fake_redis, STREAM), first,
                             f"{int(first.split('-')[0]) + 25 * 60_000}-0", model="patchtst")
    assert healthy.status is Status.PASS, healthy.firings[:1]


def test_replay_of_an_empty_or_reversed_range(root: Root, fake_redis) -> None:
    write_events(fake_redis, "healthy", 10, dt.datetime(2026, 1, 10, 6, tzinfo=dt.UTC),
                 dt.datetime(2026, 1, 10, 6, 5, tzinfo=dt.UTC), seed=1)
    source = RedisStreamSource(fake_redis, STREAM)
    empty = mon.run_replay(root.settings(), source, "1-0", "2-0", model="patchtst")
    assert empty.status is Status.WAIT and empty.checks == 0
    few = mon.run_replay(root.settings(), source, "0-0", "9999999999999-0", model="patchtst")
    assert few.status is Status.WAIT and "too little evidence" in few.summary
    assert few.checks <= 12  # starts at the first entry, not at 1970
    with pytest.raises(InputError, match="is before"):
        mon.run_replay(root.settings(), source, "5-0", "4-0", model="patchtst")


def test_replay_skips_long_silences_after_judging_them(root: Root, fake_redis) -> None:
    day = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    write_events(fake_redis, "healthy", 300, day, day + dt.timedelta(minutes=10), seed=1)
    later = day + dt.timedelta(days=30)
    write_events(fake_redis, "healthy", 300, later, later + dt.timedelta(minutes=10), seed=2)
    result = mon.run_replay(root.settings(), RedisStreamSource(fake_redis, STREAM), "0-0", "9999999999999-0",
                            model="patchtst")
    assert result.status is Status.FAIL and result.firings[0]["violations"][0].startswith("telemetry stalled")
    assert result.checks < 200  # 30 days of silence is not 86,400 checks


def test_completion_needs_an_unbroken_watch(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    # The producer ran from activation, but the monitor only started 20 minutes later.
    write_events(fake_redis, "healthy", 800, start, start + dt.timedelta(minutes=20), seed=1)
    clock = FastClock(start + dt.timedelta(minutes=20), producer(fake_redis, start=start))
    result = run(activated, fake_redis, clock, interval=60, duration=3600)
    assert result.status is Status.WAIT and result.summary.startswith("INCONCLUSIVE")
    assert "went unwatched for 20.0 min" in result.summary
    assert root.records()[-1]["action"] == "monitoring_inconclusive"


def test_a_bad_entry_that_breaks_a_check_counts_against_the_budget(root: Root, activated, fake_redis) -> None:
    class Broken:
        def pages(self, *a: Any, **k: Any):
            raise ValueError("something no reader expected")

    result = run(activated, fake_redis, FastClock(activated["at"]), source=Broken(), interval=30)
    assert result.status is Status.FAIL and result.checks == 3
    assert result.violations == ("telemetry lost: Redis errors on 3 consecutive checks (limit 3)",)


def test_watchdog_repairs_a_canary_left_half_applied(root: Root, activated) -> None:
    settings = activated["settings"]
    state = st.load_state(settings)
    stuck = dict(state, phase="applying", step="restarted",
                 started_at=(activated["at"] - dt.timedelta(hours=1)).isoformat())
    st.save_state(settings, stuck)
    result = mon.run_watchdog(settings)
    assert result.status is Status.FAIL and result.summary.endswith("repaired by rollback")
    assert st.load_state(settings) is None and not root.dropin.exists()
    assert root.records()[-1]["trigger"] == "qsc_monitor_watchdog"


def test_an_event_in_the_activation_second_but_before_it_is_not_the_canarys(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    assert activated["canary"].activated_at.count(".") == 1  # milliseconds are kept
    before = start - dt.timedelta(milliseconds=1)
    write_events(fake_redis, "healthy", 1, before - dt.timedelta(seconds=1), before, seed=1)
    clock = FastClock(start, producer(fake_redis, start=start))
    result = run(activated, fake_redis, clock, interval=60, duration=600)
    assert result.events == 10 * PER_TICK  # not one more


@pytest.mark.parametrize("damage", ["conf", "models", "window", "outcomes"])
def test_a_malformed_saved_state_is_a_one_line_state_error(root: Root, activated, fake_redis, damage) -> None:
    """Valid JSON that is not a watch (an array that does not decode, a wrong type, a missing field) is refused
    with the path and how to recover; the file is left as it was for the operator to look at."""
    start = activated["at"]
    feed = producer(fake_redis, start=start)

    with pytest.raises(Crash):
        run(activated, fake_redis, FastClock(start, crashing_at(3, feed)), interval=60)
    path = mon.monitor_state_path(activated["settings"])
    saved = json.loads(path.read_text())
    if damage == "conf":
        saved["models"]["xgb"]["conf"] = "<f8:not base64!"
    elif damage == "models":
        saved["models"] = 5
    elif damage == "outcomes":
        saved["outcomes"]["cells"] = "four"
    else:
        del saved["ensemble"]["window"]
    path.write_text(json.dumps(saved))
    before = path.read_bytes()
    with pytest.raises(StateError, match="is malformed .*move it aside"):
        run(activated, fake_redis, FastClock(start, feed), interval=60)
    assert path.read_bytes() == before


def test_a_check_runs_with_the_collector_paused_and_leaves_it_on(root: Root, activated, fake_redis,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A collection in the middle of a check (the whole long-lived heap scanned) doubled its time in
    bench_monitor.py: the check and its records run with the collector paused, and it is back on after."""
    import gc

    from qtsafe.monitor.state import Watch

    seen: list[bool] = []
    real_tick = Watch.tick

    def tick(self: Watch, *args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real_tick(self, *args, **kwargs)

    monkeypatch.setattr(Watch, "tick", tick)
    start = activated["at"]
    clock = FastClock(start, producer(fake_redis, start=start))
    result = run(activated, fake_redis, clock, interval=60, duration=1800)
    assert result.checks == len(seen) >= 30 and not any(seen), result.summary
    assert gc.isenabled()
